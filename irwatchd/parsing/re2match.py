"""A faster search API over google-re2's compiled patterns, for the per-line hot paths.

The `re2` module's `_Match` objects convert byte spans to character offsets in Python and
rebuild the name-to-index map on every `group(name)` call, which costs about 15 µs per
header parse (google-re2 1.1.20251105, measured with timeit). `Re2Pattern.search` makes one
call into the compiled RE2 object and slices the groups directly, so results are the same
strings `re2.compile(pattern).search(text).group(name)` returns.
"""

from __future__ import annotations

from collections.abc import Callable

import re2

UNANCHORED = re2._Anchor.UNANCHORED
"""The anchor argument of `Re2Pattern.match_spans` for a search anywhere in the text."""
_NO_SPAN = (-1, -1)


class Re2Pattern:
    """An RE2 pattern whose `search` returns its groups as a list of strings (None if unset).

    `index[name]` is the position of a named group in that list; position 0 is the whole match.
    """

    __slots__ = ("_compiled", "index", "match_spans", "names", "pattern", "regexp")

    def __init__(self, pattern: str, options: re2.Options) -> None:
        self.pattern = pattern
        self.regexp = re2.compile(pattern, options)
        # NOTE: `_regexp` is google-re2's binding of the C++ RE2 object, not a public API. Its
        # Match(anchor, bytes, pos, endpos) returns one (start, end) byte span per group, and
        # (-1, -1) for a group that did not take part.
        self._compiled = self.regexp._regexp
        # `match_spans(UNANCHORED, data, 0, len(data))` returns those spans for UTF-8 bytes,
        # for hot loops that slice the groups they need themselves.
        self.match_spans: Callable[[object, bytes, int, int], list[tuple[int, int]]]
        self.match_spans = self._compiled.Match
        self.index: dict[str, int] = dict(self.regexp.groupindex)
        # Same order as `re2` groupdict(), so dicts built from it compare and print the same.
        self.names: tuple[tuple[str, int], ...] = tuple(self.index.items())

    def search(self, text: str) -> list[str | None] | None:
        """Search `text`; return the whole match and every group, or None when there is no match."""
        data = text.encode()
        spans = self._compiled.Match(UNANCHORED, data, 0, len(data))
        if spans[0] == _NO_SPAN:
            return None
        if len(data) == len(text):
            # ASCII text: byte offsets are character offsets.
            return [None if start < 0 else text[start:end] for start, end in spans]
        # RE2 matches UTF-8 at character boundaries, so every span decodes on its own.
        return [None if start < 0 else data[start:end].decode() for start, end in spans]

    def search_named(self, text: str) -> dict[str, str] | None:
        """Search `text`; return the named groups that took part, or None when there is no match."""
        groups = self.search(text)
        if groups is None:
            return None
        return {
            name: groups[position]  # type: ignore[misc]
            for name, position in self.names
            if groups[position] is not None
        }

    def matches(self, text: str) -> bool:
        """Return whether the pattern matches anywhere in `text`."""
        data = text.encode()
        return bool(self._compiled.Match(UNANCHORED, data, 0, len(data))[0] != _NO_SPAN)
