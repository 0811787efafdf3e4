"""Evidence text kept in a temporary file instead of memory, for a scan of old logs.

A scan can hold thousands of open incidents at once, each with up to `max_evidence_lines`
lines, and it has no other use for that text until it writes a ticket, an alert, a forensic
copy or the report. `SpooledEvidence` keeps only positions in memory and reads each line back
from an `EvidenceSpool` when an item is built. On the 1,000,000-line auth.log of
`bench/generate.py`, the text is about 7 MiB of a scan's peak RSS.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from irwatchd.correlation.evidence import EvidenceItem, EvidenceLines

WRITE_BYTES = 64 << 10
"""Bytes of text gathered in memory before they are written to the file. The buffer grows
by copies into larger blocks: with 1 MiB, a scan of the 1,000,000-line auth.log of
`bench/generate.py` peaked 2 MiB higher."""


class EvidenceSpool:
    """An append-only, unnamed temporary file of evidence text, read back by byte range.

    The file is created with `O_TMPFILE` where the file system has it, so nothing is left
    behind if the scan is killed. Text is encoded with `surrogatepass`, so any `str` a line
    decoder produced reads back unchanged.
    """

    def __init__(self, folder: Path) -> None:
        self._file = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115 - closed by close()
        self._written = 0
        self._pending = bytearray()

    def add(self, text: str) -> tuple[int, int]:
        """Store `text`; return its start and end byte in the spool."""
        data = text.encode("utf-8", "surrogatepass")
        start = self._written + len(self._pending)
        self._pending += data
        if len(self._pending) >= WRITE_BYTES:
            self._write_pending()
        return start, start + len(data)

    def read(self, start: int, end: int) -> str:
        """Return the text stored at bytes `start` to `end`."""
        # A text is written whole, so it is either in the file or in `_pending`.
        if start >= self._written:
            data = bytes(self._pending[start - self._written : end - self._written])
        else:
            data = os.pread(self._file.fileno(), end - start, start)
            if len(data) != end - start:
                raise OSError(
                    f"evidence spool {self._file.name!r} returned {len(data)} of {end - start} "
                    f"bytes at {start}; the file was changed or cut while the scan ran"
                )
        return data.decode("utf-8", "surrogatepass")

    def size(self) -> int:
        """Return the bytes stored so far."""
        return self._written + len(self._pending)

    def close(self) -> None:
        """Delete the file."""
        self._file.close()

    def _write_pending(self) -> None:
        if self._pending:
            self._file.write(self._pending)
            self._file.flush()
            self._written += len(self._pending)
            self._pending = bytearray()


class SpooledEvidence(EvidenceLines):
    """Evidence lines whose text is in an `EvidenceSpool`; reads like `EvidenceLines`.

    Each line takes four numbers: its start and end in the spool, its offset in the log and
    the number of its path. `text_size` is 0, as the in-memory budget of the incident tracker
    has no share in this text.
    """

    __slots__ = ("_spool",)
    _STRIDE = 4

    def __init__(self, spool: EvidenceSpool, items: Iterable[Mapping[str, object]] = ()) -> None:
        self._spool = spool
        super().__init__(items)

    def _store(self, line: str, offset: int, path_index: int) -> None:
        """Write one line's text to the spool and keep where it is."""
        start, end = self._spool.add(line)
        self._positions.extend((start, end, offset, path_index))

    def text_size(self) -> int:
        """Return the characters held in memory: only those of items of another shape."""
        return super().text_size() if self._plain is not None else 0

    def tail(self, count: int) -> SpooledEvidence:
        """Return a new list of the last `count` items; the text stays where it is in the spool."""
        result = SpooledEvidence(self._spool)
        if count <= 0:
            return result
        if self._plain is not None:
            result._plain = [dict(item) for item in self._plain[-count:]]
            return result
        first = max(0, len(self) - count)
        result._positions = self._positions[4 * first :]
        result._paths = self._paths
        return result

    def _item(self, index: int) -> EvidenceItem:
        if self._plain is not None:
            return self._plain[index]
        start, end, offset, path = self._positions[4 * index : 4 * index + 4]
        return {"path": self._paths[path], "offset": offset, "line": self._spool.read(start, end)}
