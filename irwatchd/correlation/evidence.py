"""The evidence lines of one incident, kept compactly and read as `{path, offset, line}` items.

Tickets, alerts and forensic copies read each item as a JSON object with the source path, the
byte offset of the line in that file and the line's text. The daemon can hold tens of thousands
of open incidents, so the items are not kept as dicts: the texts are one string, and the
(end in that string, offset, path number) triples one `array`. For an incident with three
lines this takes about 300 bytes plus the text, in place of about 870 bytes plus the text as a
list of dicts (estimated from `sys.getsizeof` on CPython 3.11). An item of another shape,
which only a hand-edited ticket can hold, switches the incident to a plain list of dicts, so it
is written back as it was read.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import overload

EvidenceItem = dict[str, object]

_KEYS = ["path", "offset", "line"]


class EvidenceLines(Sequence[EvidenceItem]):
    """A list of evidence items that builds each `{path, offset, line}` dict when it is read."""

    __slots__ = ("_paths", "_plain", "_positions", "_text")
    _STRIDE = 3
    """Numbers in `_positions` for each line."""

    def __init__(self, items: Iterable[Mapping[str, object]] = ()) -> None:
        self._text = ""
        self._positions: array[int] = array("q")
        """(end of the line in `_text`, offset, index into `_paths`) for each line."""
        self._paths: tuple[str, ...] = ()
        self._plain: list[EvidenceItem] | None = None
        for item in items:
            self.append(item)

    def append_line(self, path: str, offset: int, line: str) -> None:
        """Add one line read at `offset` of `path`."""
        if self._plain is not None:
            self._plain.append({"path": path, "offset": offset, "line": line})
            return
        try:
            index = self._paths.index(path)
        except ValueError:
            index = len(self._paths)
            self._paths = (*self._paths, path)
        self._store(line, offset, index)

    def _store(self, line: str, offset: int, path_index: int) -> None:
        """Keep one line's text and its position; `append_line` numbered its path."""
        self._text += line
        self._positions.extend((len(self._text), offset, path_index))

    def append(self, item: Mapping[str, object]) -> None:
        """Add one item, keeping it as it is unless it is exactly `{path, offset, line}`."""
        if isinstance(item, Mapping) and list(item) == _KEYS and self._plain is None:
            path, offset, line = item["path"], item["offset"], item["line"]
            if isinstance(path, str) and type(offset) is int and isinstance(line, str):
                self.append_line(path, offset, line)
                return
        if self._plain is None:
            self._plain = list(self)
            self._text, self._positions, self._paths = "", array("q"), ()
        self._plain.append(item)  # type: ignore[arg-type]

    def text_size(self) -> int:
        """Return the number of characters of line text held."""
        if self._plain is not None:
            return sum(len(str(item.get("line", ""))) for item in self._plain)
        return len(self._text)

    def tail(self, count: int) -> EvidenceLines:
        """Return a new list of the last `count` items, sharing no state with this one."""
        if count <= 0:
            return EvidenceLines()
        if self._plain is not None:
            return EvidenceLines(self._plain[-count:])
        first = max(0, len(self) - count)
        start = self._positions[3 * first - 3] if first else 0
        positions = self._positions[3 * first :]
        for index in range(0, len(positions), 3):
            positions[index] -= start
        result = EvidenceLines()
        result._text = self._text[start:]
        result._positions = positions
        result._paths = self._paths
        return result

    def __len__(self) -> int:
        if self._plain is not None:
            return len(self._plain)
        return len(self._positions) // self._STRIDE

    def _item(self, index: int) -> EvidenceItem:
        if self._plain is not None:
            return self._plain[index]
        positions = self._positions
        start = positions[3 * index - 3] if index else 0
        end, offset, path = positions[3 * index : 3 * index + 3]
        return {"path": self._paths[path], "offset": offset, "line": self._text[start:end]}

    @overload
    def __getitem__(self, index: int) -> EvidenceItem: ...

    @overload
    def __getitem__(self, index: slice) -> list[EvidenceItem]: ...

    def __getitem__(self, index: int | slice) -> EvidenceItem | list[EvidenceItem]:
        if isinstance(index, slice):
            return [self._item(number) for number in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"evidence index {index} is out of range (0 to {len(self) - 1})")
        return self._item(index)

    def __iter__(self) -> Iterator[EvidenceItem]:
        for index in range(len(self)):
            yield self._item(index)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EvidenceLines | list):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EvidenceLines({list(self)!r})"

    def to_json(self) -> list[EvidenceItem]:
        """Return the items as a JSON-ready list."""
        return list(self)
