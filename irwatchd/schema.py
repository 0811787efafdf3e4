"""Typed validation of config and rule documents with msgspec, with errors located by line.

msgspec stops at the first invalid value and names it by a path such as
`$.blocking.allowlist[0]`. `convert` turns that path into the dotted key and the file line of
a `Problem`, words the message for a YAML file, and adds the allowed values of a choice.

Checks across fields run in a struct's `__post_init__` and raise `ValueError` with a message
in lower case. One that blames a field starts with its name, as in `allowlist: ...`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import msgspec.inspect

from irwatchd.errors import ConfigError, Problem
from irwatchd.secret import decode_secret
from irwatchd.yamlload import line_of

T = TypeVar("T")

Location = tuple[int | str, ...]

MAX_PROBLEMS = 20
"""Problems reported for one document at most."""

MAX_SHOWN_CHARS = 80
"""Characters of a bad value quoted in a message; the rest is cut."""

SECRET_KEYS = frozenset({"secret", "password"})
"""Keys whose values are never quoted in a message, which may end up in logs."""

_UNKNOWN_FIELD = "Object contains unknown field `"
_MISSING_FIELD = "Object missing required field `"
_TYPE_WORDS = {"object": "mapping", "array": "list"}
"""msgspec's JSON type names, and the YAML words for them."""


@dataclass(slots=True)
class _Error:
    """One msgspec error, located in the copy being validated."""

    location: Location
    message: str
    missing: str | None = None
    """The required key that is absent, for a missing-key error."""
    struct: Location | None = None
    """For a check across fields (`__post_init__`), the struct that raised it."""


@dataclass(slots=True)
class _Search:
    """A copy of the document that loses each bad value in turn, and what it lost.

    Locations in the copy shift when a list item is removed, so `removed_items` keeps the
    original index of each item removed from a list, by the list's original location.
    """

    document: Any
    removed_items: dict[Location, list[int]] = field(default_factory=dict)
    removed: list[Location] = field(default_factory=list)
    """Original locations of the keys and items removed so far."""

    def original(self, location: Location) -> Location:
        """Translate a location in the copy into the document as it was read."""
        result: list[int | str] = []
        for part in location:
            if isinstance(part, int):
                for index in sorted(self.removed_items.get(tuple(result), ())):
                    if index <= part:
                        part += 1
            result.append(part)
        return tuple(result)

    def remove(self, location: Location) -> bool:
        """Remove the mapping key or list item at `location` of the copy; False if absent."""
        if not location:
            return False
        _, parent = _value_at(self.document, location[:-1])
        last = location[-1]
        original = self.original(location)
        if isinstance(last, str) and isinstance(parent, dict) and last in parent:
            del parent[last]
        elif isinstance(last, int) and isinstance(parent, list) and 0 <= last < len(parent):
            del parent[last]
            index = original[-1]
            assert isinstance(index, int)  # `original` keeps the kind of each part
            self.removed_items.setdefault(original[:-1], []).append(index)
        else:
            return False
        self.removed.append(original)
        return True

    def remove_enclosing_item(self, location: Location) -> bool:
        """Remove the innermost list item that contains `location`; False if none does."""
        for end in range(len(location), 0, -1):
            if isinstance(location[end - 1], int):
                return self.remove(location[:end])
        return False

    def follows_removal(self, error: _Error) -> bool:
        """Tell whether a removal made this error: a key it removed, or a check across fields.

        Removing a bad value can break a check across fields that held before, such as the
        unique channel names once a bad name takes its default. Such an error, in the struct
        of a removed value or above it, is not reported.
        """
        if error.missing is not None:
            return (*self.original(error.location), error.missing) in self.removed
        if error.struct is not None:
            struct = self.original(error.struct)
        else:
            return False
        return any(removed[: len(struct)] == struct for removed in self.removed)


def convert(document: Any, target: type[T], path: Path | str) -> T:
    """Validate `document` as `target`; raise `ConfigError` naming the file, line and key.

    msgspec stops at the first invalid value. To report the others too, the value is removed
    from a copy of the document and the copy validated again. A key left out takes its
    default. A bad list item is left out, and so is an item that lacks a required key.
    """
    try:
        return _convert(document, target)
    except msgspec.ValidationError as first:
        latest = first
    info = msgspec.inspect.type_info(target)
    search = _Search(copy.deepcopy(document))
    problems: list[Problem] = []
    while True:
        found = _locate(latest, info, search.document)
        if not search.follows_removal(found):
            problems.append(_problem(found, search.original(found.location), path, document))
        if len(problems) >= MAX_PROBLEMS:
            more = "more problems may follow; fix these and run `irwatchd check` again"
            problems.append(Problem(str(path), None, "", more))
            break
        removed = found.missing is None and search.remove(found.location)
        if not removed and not search.remove_enclosing_item(found.location):
            break
        try:
            _convert(search.document, target)
        except msgspec.ValidationError as error:
            latest = error
            continue
        break
    problems.sort(key=lambda problem: (problem.line is None, problem.line or 0))
    raise ConfigError(problems)


def _convert(document: Any, target: type[T]) -> T:
    return msgspec.convert(document, target, strict=False, dec_hook=decode_secret)


def _problem(found: _Error, original: Location, path: Path | str, document: Any) -> Problem:
    key = ".".join(str(part) for part in original)
    if found.missing is not None:
        key = f"{key}.{found.missing}" if key else found.missing
    return Problem(str(path), line_of(document, original), key, found.message)


def _locate(error: msgspec.ValidationError, info: msgspec.inspect.Type, document: Any) -> _Error:
    """Return where in `document` a msgspec error is, with a message for people."""
    message, _, where = str(error).partition(" - at `")
    if len(message) > 4 * MAX_SHOWN_CHARS:
        message = f"{message[: 4 * MAX_SHOWN_CHARS]}... (cut)"

    where = where.removesuffix("`")
    if where.startswith("key` in `$"):
        # A mapping key that YAML read as a number, a boolean or null.
        location = parse_location(where.removeprefix("key` in `$"))
        return _Error(location, "every key must be a string; quote a key such as 1, yes or ~")
    location = parse_location(where.removeprefix("$"))
    if where.endswith("[...]"):
        message = f"a value in this mapping: {message}"

    if message[:1].islower():
        key, separator, rest = message.partition(": ")
        if separator and key in _field_names(info, location):
            return _Error((*location, key), rest, struct=location)
        return _Error(location, message, struct=location)
    if message.startswith(_UNKNOWN_FIELD):
        name = message.removeprefix(_UNKNOWN_FIELD).removesuffix("`")
        return _Error((*location, name), "unknown key; remove it or check its spelling")
    if message.startswith(_MISSING_FIELD):
        name = message.removeprefix(_MISSING_FIELD).removesuffix("`")
        text = "required key is missing; add it"
        allowed = _choices(info, (*location, name))
        if allowed:
            text += f" with one of: {_listed(allowed)}"
        return _Error(location, text, missing=name)

    message = _yaml_words(message)
    if message.startswith(("invalid value", "Invalid value")):
        allowed = _choices(info, location)
        if allowed:
            message = f"{message[:1].lower()}{message[1:]}; allowed: {_listed(allowed)}"
    elif message.startswith("Expected"):
        found, value = _value_at(document, location)
        if ", got " not in message:
            message += f", got {_shown(value, location)}" if found else ""
        elif found and not isinstance(value, dict | list | None):
            message += f": {_shown(value, location)}"
    return _Error(location, message)


def _yaml_words(message: str) -> str:
    """Word a msgspec message for a YAML file: a mapping and a list, not an object and array."""
    if message.startswith("Invalid enum value"):
        return "invalid value" + message.removeprefix("Invalid enum value")
    if not message.startswith("Expected `"):
        return message
    head, _, rest = message.partition("`")
    types, _, tail = rest.partition("`")
    worded = " | ".join(_TYPE_WORDS.get(name, name) for name in types.split(" | "))
    for name, word in _TYPE_WORDS.items():
        tail = tail.replace(f"got `{name}`", f"got `{word}`")
    return f"{head}`{worded}`{tail}"


def _listed(values: tuple[Any, ...]) -> str:
    return ", ".join(repr(value) for value in values)


def _shown(value: Any, location: Location) -> str:
    """Quote a bad value, unless it is a secret or a whole mapping or list, cut to a length."""
    if SECRET_KEYS.intersection(part for part in location if isinstance(part, str)):
        return "(a secret, not shown)"
    if isinstance(value, dict):
        return f"a mapping of {len(value)} key(s)"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    text = repr(value)
    if len(text) > MAX_SHOWN_CHARS:
        text = f"{text[:MAX_SHOWN_CHARS]}... ({len(text)} characters)"
    return text


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
    """Split a msgspec path such as `.rules[2].pattern` into `("rules", 2, "pattern")`.

    A `[...]`, msgspec's mark for a value of a mapping with any keys, adds nothing.
    """
    parts: list[int | str] = []
    position = 0
    while position < len(text):
        if text[position] == "[":
            end = text.index("]", position)
            inside = text[position + 1 : end]
            if inside.isdigit():
                parts.append(int(inside))
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
        item.encode_name
        for member in members
        if isinstance(member, msgspec.inspect.StructType)
        for item in member.fields
    }


def _choices(info: msgspec.inspect.Type, location: Location) -> tuple[Any, ...]:
    """Return the allowed values of the literal or tag at `location`, if it is one."""
    node: msgspec.inspect.Type | None = info
    for part in location:
        node = _step(node, part)
        if node is None:
            return ()
    members = node.types if isinstance(node, msgspec.inspect.UnionType) else (node,)
    for member in members:
        if isinstance(member, msgspec.inspect.LiteralType):
            return member.values
        if isinstance(member, _TaggedField):
            return member.tags
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
        for field_info in node.fields:
            if field_info.encode_name == part:
                return field_info.type
    if isinstance(node, msgspec.inspect.DictType):
        return node.value_type
    return None
