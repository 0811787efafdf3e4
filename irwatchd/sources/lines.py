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
