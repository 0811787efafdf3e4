"""YAML loading that remembers the line of every mapping key and list item, for error messages.

A key given twice in one mapping is an error, not a silent override of the first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from irwatchd.errors import ConfigError, Problem


class LineDict(dict[str, Any]):
    """A mapping loaded from YAML, with `key_lines` giving the 1-based line of each key."""

    key_lines: dict[str, int]
    line: int


class LineList(list[Any]):
    """A list loaded from YAML, with `item_lines` giving the 1-based line of each item."""

    item_lines: list[int]
    line: int


# libyaml's parser (PyYAML's C extension) parses the default rule files about ten times faster
# than the pure-Python one (8 ms against 103 ms), and every `irwatchd detect` starts by loading
# them. PyYAML built without libyaml falls back to the pure-Python parser.
_SafeBase: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_SafeBase):  # type: ignore[valid-type,misc]
    """A safe loader whose mappings are `LineDict`s."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    mapping = LineDict()
    mapping.key_lines = {}
    mapping.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if isinstance(key, list | dict):
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain value, not a list or mapping",
                key_node.start_mark,
            )  # fmt: skip
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None,
                f"duplicate key {key!r} (first at line {mapping.key_lines[str(key)]}); "
                "keep one of them",
                key_node.start_mark,
            )  # fmt: skip
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[str(key)] = line
    return mapping


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LineList:
    items = LineList(loader.construct_object(child, deep=True) for child in node.value)
    items.item_lines = [child.start_mark.line + 1 for child in node.value]
    items.line = node.start_mark.line + 1
    return items


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(path: Path) -> Any:
    """Parse one YAML file, raising `ConfigError` with the file and line on failure."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problem = Problem(str(path), None, "", "file not found; create it or pass -c FILE")
        raise ConfigError([problem]) from None
    except IsADirectoryError:
        problem = Problem(str(path), None, "", "is a folder, not a YAML file; pass the file")
        raise ConfigError([problem]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([Problem(str(path), None, "", f"cannot read: {error}")]) from None
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        problem = Problem(str(path), None, "", "invalid YAML: nested too deeply to read")
        raise ConfigError([problem]) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(error, "problem", None) or str(error)
        problem = Problem(str(path), line, "", f"invalid YAML: {reason}")
        raise ConfigError([problem]) from None


def line_of(document: Any, location: tuple[int | str, ...]) -> int | None:
    """Return the line of the deepest key in `location` that the document has."""
    line = getattr(document, "line", None)
    node = document
    for part in location:
        if isinstance(node, LineDict) and isinstance(part, str) and part in node:
            line = node.key_lines.get(str(part), line)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            if isinstance(node, LineList):
                line = node.item_lines[part]
            node = node[part]
            line = getattr(node, "line", line)
        else:
            break
    return line
