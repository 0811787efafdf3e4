"""Typed validation of config and rule documents with msgspec, with errors located by line.

msgspec stops at the first invalid value and names it by a path such as
`$.blocking.allowlist[0]`. `convert` turns that path into the dotted key and the file line of
a `Problem`, and adds the allowed values to an error about a choice.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import msgspec.inspect

from irwatchd.errors import ConfigError, Problem
from irwatchd.secret import decode_secret
from irwatchd.yamlload import line_of

T = TypeVar("T")

Location = tuple[int | str, ...]

_UNKNOWN_FIELD = "Object contains unknown field `"
_MISSING_FIELD = "Object missing required field `"


MAX_PROBLEMS = 20
"""Problems reported for one document at most."""


def convert(document: Any, target: type[T], path: Path | str) -> T:
    """Validate `document` as `target`; raise `ConfigError` naming the file, line and key.

    msgspec stops at the first invalid value. To report the others too, the value is removed
    from a copy of the document and the copy validated again, so a key left out takes its
    default. This stops at a problem that removing cannot clear: a missing key or a bad item
    of a list, whose removal would shift the items after it.
    """
    try:
        return _convert(document, target)
    except msgspec.ValidationError as error:
        first = _locate(error, target, document)
    problems = [_problem(first, path, document)]
    remaining = copy.deepcopy(document)
    location = first[0]
    removed = set()
    while len(problems) < MAX_PROBLEMS and _remove(remaining, location):
        removed.add(location)
        try:
            _convert(remaining, target)
        except msgspec.ValidationError as error:
            location, message = _locate(error, target, document)
            missing = message.removeprefix(_MISSING_FIELD).removesuffix("`")
            if message.startswith(_MISSING_FIELD) and (*location, missing) in removed:
                break  # that required key was only removed here, after its own problem
            problems.append(_problem((location, message), path, document))
            continue
        break
    raise ConfigError(problems)


def _convert(document: Any, target: type[T]) -> T:
    return msgspec.convert(document, target, strict=False, dec_hook=decode_secret)


def _problem(located: tuple[Location, str], path: Path | str, document: Any) -> Problem:
    location, message = located
    key = ".".join(str(part) for part in location)
    return Problem(str(path), line_of(document, location), key, message)


def _remove(document: Any, location: Location) -> bool:
    """Delete the mapping key at `location`; return False when it names no such key."""
    if not location or not isinstance(location[-1], str):
        return False
    found, parent = _value_at(document, location[:-1])
    if not found or not isinstance(parent, dict) or location[-1] not in parent:
        return False
    del parent[location[-1]]
    return True


def _locate(
    error: msgspec.ValidationError, target: type[Any], document: Any
) -> tuple[Location, str]:
    """Return the location of the value a msgspec error is about, and a message for people."""
    message, _, where = str(error).partition(" - at `$")
    location = parse_location(where.removesuffix("`"))
    info = msgspec.inspect.type_info(target)
    key, separator, rest = message.partition(": ")
    if separator and key in _field_names(info, location):
        # A check across fields names the field it blames first, as in `allowlist: ...`.
        location += (key,)
        message = rest
    elif message.startswith(_UNKNOWN_FIELD):
        location += (message.removeprefix(_UNKNOWN_FIELD).removesuffix("`"),)
        message = "unknown key; remove it or check its spelling"
    elif message.startswith(("Invalid enum value", "Invalid value")):
        allowed = _choices(info, location)
        if allowed:
            message = f"{message}; allowed: {', '.join(repr(value) for value in allowed)}"
    elif message.startswith("Expected"):
        found, value = _value_at(document, location)
        if found:
            message += f": {value!r}" if ", got " in message else f", got {value!r}"
    return location, message


def _value_at(document: Any, location: Location) -> tuple[bool, Any]:
    """Return whether the document has a value at `location`, and that value."""
    node = document
    for part in location:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            node = node[part]  # type: ignore[index]
        else:
            return False, None
    return True, node


def parse_location(text: str) -> Location:
    """Split a msgspec path such as `.rules[2].pattern` into `("rules", 2, "pattern")`."""
    parts: list[int | str] = []
    position = 0
    while position < len(text):
        if text[position] == "[":
            end = text.index("]", position)
            inside = text[position + 1 : end]
            parts.append(int(inside) if inside.isdigit() else inside.strip("'\"."))
            position = end + 1
        else:  # "."
            end = len(text)
            for marker in ".[":
                found = text.find(marker, position + 1)
                if found != -1:
                    end = min(end, found)
            parts.append(text[position + 1 : end])
            position = end
    return tuple(parts)


def _field_names(info: msgspec.inspect.Type, location: Location) -> set[str]:
    """Return the field names of the struct, or of every struct of the union, at `location`."""
    node: msgspec.inspect.Type | None = info
    for part in location:
        node = _step(node, part)
    members = node.types if isinstance(node, msgspec.inspect.UnionType) else (node,)
    return {
        field.encode_name
        for member in members
        if isinstance(member, msgspec.inspect.StructType)
        for field in member.fields
    }


def _choices(info: msgspec.inspect.Type, location: Location) -> tuple[Any, ...]:
    """Return the allowed values of the literal or tag at `location`, if it is one."""
    node: msgspec.inspect.Type | None = info
    for part in location:
        node = _step(node, part)
        if node is None:
            return ()
    if isinstance(node, msgspec.inspect.LiteralType):
        return node.values
    if isinstance(node, _TaggedField):
        return node.tags
    return ()


class _TaggedField(msgspec.inspect.Type):
    """The tag field of a tagged union, such as a channel's `type`, with its allowed tags."""

    tags: tuple[Any, ...]


def _step(node: msgspec.inspect.Type | None, part: int | str) -> msgspec.inspect.Type | None:
    if isinstance(node, msgspec.inspect.UnionType):
        structs = [t for t in node.types if isinstance(t, msgspec.inspect.StructType)]
        tags = tuple(t.tag for t in structs if t.tag is not None)
        if tags and part == structs[0].tag_field:
            return _TaggedField(tags)
        for member in node.types:
            found = _step(member, part)
            if found is not None:
                return found
        return None
    if isinstance(part, int):
        if isinstance(node, msgspec.inspect.ListType):
            return node.item_type
        return None
    if isinstance(node, msgspec.inspect.StructType):
        for field in node.fields:
            if field.encode_name == part:
                return field.type
    if isinstance(node, msgspec.inspect.DictType):
        return node.value_type
    return None
