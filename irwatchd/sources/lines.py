"""Bytes to lines: decoding, CRLF, NUL bytes and the per-line length cap."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO


@dataclass(frozen=True, slots=True)
class RawLine:
    """One complete line as read: its text, number, byte offset and size on disk."""

    text: str
    number: int
    offset: int
    size: int
    invalid_utf8_sha256: str | None = None
    truncated_bytes: int = 0


@dataclass(frozen=True, slots=True)
class LineBlock:
    """Complete lines as they are on disk, each ending with a newline and none over the cap.

    The detector can prefilter such a block as it is and decode only the lines a rule may
    match. `lines` decodes all of them into the `RawLine`s a line-by-line read gives.
    """

    data: bytes
    offset: int
    """Byte offset of the first line in its file."""
    number: int | None
    """Line number of the line before the block, or None when the file was opened at its end."""
    count: int
    """Number of lines."""

    def lines(self) -> list[RawLine]:
        """Return the lines as `RawLine`s; their number is 0 when `number` is None."""
        result = []
        offset = self.offset
        pieces = self.data.split(b"\n")
        pieces.pop()  # the block ends with a newline
        for index, piece in enumerate(pieces):
            text, digest = decode_line(piece)
            number = 0 if self.number is None else self.number + index + 1
            result.append(RawLine(text, number, offset, len(piece) + 1, digest))
            offset += len(piece) + 1
        return result


def lines_within(block: bytes, limit: int) -> bool:
    """Return whether no line of `block` is longer than `limit` bytes, newline not counted."""
    start = 0
    while len(block) - start > limit + 1:
        # The last newline within reach ends at least one line, or the line is too long.
        newline = block.rfind(b"\n", start, start + limit + 1)
        if newline < 0:
            return False
        start = newline + 1
    return True


def decode_line(data: bytes) -> tuple[str, str | None]:
    """Decode a line as UTF-8; invalid bytes become U+FFFD and the raw bytes' SHA-256 is returned.

    NUL bytes are kept as U+0000 in the text; the JSON writers escape them.
    """
    if data.endswith(b"\r"):
        data = data[:-1]
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace"), hashlib.sha256(data).hexdigest()


def iter_lines(
    stream: BinaryIO, max_line_bytes: int, chunk_size: int = 1 << 20
) -> Iterator[RawLine]:
    """Yield every line of a stream, cutting each at `max_line_bytes` and skipping the rest.

    A final line without a newline is yielded too, since a one-shot reader sees the whole file.
    """
    number = 0
    offset = 0
    pending = bytearray()
    pending_start = 0
    dropped = 0
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            break
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            if newline < 0:
                room = max_line_bytes - len(pending)
                piece = chunk[start:]
                if room > 0:
                    pending += piece[:room]
                dropped += max(0, len(piece) - max(room, 0))
                break
            piece = chunk[start:newline]
            room = max_line_bytes - len(pending)
            pending += piece[: max(room, 0)]
            dropped += max(0, len(piece) - max(room, 0))
            number += 1
            size = len(pending) + dropped + 1
            text, digest = decode_line(bytes(pending))
            yield RawLine(text, number, pending_start, size, digest, dropped)
            offset = pending_start + size
            pending_start = offset
            pending.clear()
            dropped = 0
            start = newline + 1
    if pending or dropped:
        number += 1
        text, digest = decode_line(bytes(pending))
        yield RawLine(text, number, pending_start, len(pending) + dropped, digest, dropped)
