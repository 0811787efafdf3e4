"""One followed file: its open handle, identity, read position and partial last line."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import BinaryIO

from irwatchd.sources.lines import RawLine, decode_line

HEAD_BYTES = 64
"""Bytes hashed to tell a new file from an old one that got the same inode back."""

READ_CHUNK = 1 << 20


def head_sha256(handle: BinaryIO, size: int = HEAD_BYTES) -> tuple[str, int]:
    """Hash the first `size` bytes (at most `HEAD_BYTES`) without moving the read position.

    Returns the hash and how many bytes it covers, which is less than `size` for a short file.
    """
    head = os.pread(handle.fileno(), min(size, HEAD_BYTES), 0)
    return hashlib.sha256(head).hexdigest(), len(head)


@dataclass(eq=False)
class FollowedFile:
    """A log file being read: complete lines come out, a partial last line waits.

    `offset` is the byte just after the last complete line handed out, which is where a
    checkpoint points. A line longer than `max_line_bytes` is cut there; its remaining bytes
    are skipped up to the next newline and counted in `truncated_bytes`.
    """

    path: str
    group: str
    source_type: str
    handle: BinaryIO
    device: int
    inode: int
    head: str
    head_size: int
    offset: int
    line_number: int | None
    max_line_bytes: int
    pending: bytearray = field(default_factory=bytearray)
    skipping: int = 0
    read_position: int = 0
    lines_read: int = 0

    def __post_init__(self) -> None:
        self.read_position = self.offset
        self.handle.seek(self.offset)

    def refresh_head(self) -> None:
        """Rehash the head while it covers fewer than `HEAD_BYTES`, as the file grows."""
        if self.head_size < HEAD_BYTES:
            self.head, self.head_size = head_sha256(self.handle)

    def is_replaced(self) -> bool:
        """Whether the first bytes changed under the same inode (the file was rewritten)."""
        current, size = head_sha256(self.handle, self.head_size)
        return size < self.head_size or current != self.head

    def read_lines(self, limit: int = READ_CHUNK) -> list[RawLine]:
        """Read up to `limit` new bytes and return the complete lines among them."""
        data = self.handle.read(limit)
        if not data:
            return []
        lines: list[RawLine] = []
        start = 0
        base = self.read_position
        self.read_position += len(data)
        while True:
            newline = data.find(b"\n", start)
            piece_end = len(data) if newline < 0 else newline
            room = self.max_line_bytes - len(self.pending)
            piece = data[start:piece_end]
            if room > 0:
                self.pending += piece[:room]
            self.skipping += max(0, len(piece) - max(room, 0))
            if newline < 0:
                break
            end = base + newline + 1
            text, digest = decode_line(bytes(self.pending))
            number = None if self.line_number is None else self.line_number + 1
            self.line_number = number
            lines.append(RawLine(text, number or 0, self.offset, end - self.offset, digest, self.skipping))
            self.offset = end
            self.pending.clear()
            self.skipping = 0
            start = newline + 1
        self.lines_read += len(lines)
        return lines

    def close(self) -> None:
        """Close the handle."""
        self.handle.close()
