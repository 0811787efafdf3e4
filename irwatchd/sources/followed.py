"""One followed file: its open handle, identity, read position and partial last line."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from typing import BinaryIO

from irwatchd.sources.checkpoints import Checkpoint, Identity
from irwatchd.sources.lines import LineBlock, RawLine, decode_line, lines_within

HEAD_BYTES = 64
"""Bytes hashed to tell a new file from an old one that got the same inode back."""

READ_CHUNK = 1 << 20
"""Bytes read from one file per poll, which bounds the memory a burst of lines can take."""


def head_sha256(handle: BinaryIO, size: int = HEAD_BYTES) -> tuple[str, int]:
    """Hash the first `size` bytes (at most `HEAD_BYTES`) without moving the read position.

    Returns the hash and how many bytes it covers, which is less than `size` for a short file.
    """
    head = os.pread(handle.fileno(), min(size, HEAD_BYTES), 0)
    return hashlib.sha256(head).hexdigest(), len(head)


@dataclass(eq=False)
class FollowedFile:
    """A log file being read: complete lines come out, a partial last line waits.

    `offset` is the byte just after the last complete line handed out. `committed_offset`
    is the part of that whose findings are durably in the audit log; checkpoints point
    there, and `rewind` goes back there when recording failed. A line longer than
    `max_line_bytes` is cut there; its remaining bytes are skipped up to the next newline
    and counted in the line's `truncated_bytes`.

    `path` is the name findings report, and `location` is where the file is on disk. The
    two differ once a rotated file is followed under its new name.
    """

    path: str
    location: str
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
    committed_offset: int = 0
    committed_line_number: int | None = None
    last_growth: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.read_position = self.offset
        self.committed_offset = self.offset
        self.committed_line_number = self.line_number
        self.handle.seek(self.offset)

    @property
    def identity(self) -> Identity:
        """The (device, inode) pair."""
        return (self.device, self.inode)

    def size(self) -> int:
        """Return the file's current size through the open handle."""
        return os.fstat(self.handle.fileno()).st_size

    def at_end(self) -> bool:
        """Return whether every byte written so far has been read."""
        return self.read_position >= self.size()

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
        return self._split(self.handle.read(limit))

    def read_block(self, limit: int = READ_CHUNK) -> LineBlock | list[RawLine]:
        """Read up to `limit` new bytes and return the complete lines among them.

        They come as one `LineBlock` when no line is over `max_line_bytes`, else as `RawLine`s.
        """
        data = self.handle.read(limit)
        end = data.rfind(b"\n") + 1
        if end == 0 or self.skipping:
            return self._split(data)
        block = bytes(self.pending) + data[:end] if self.pending else data[:end]
        if not lines_within(block, self.max_line_bytes):
            return self._split(data)
        self.pending.clear()
        count = block.count(b"\n")
        lines = LineBlock(block, self.offset, self.line_number, count)
        self.read_position += end
        self.offset = self.read_position
        if self.line_number is not None:
            self.line_number += count
        self.lines_read += count
        self.last_growth = time.monotonic()
        self._split(data[end:])
        self.refresh_head()
        return lines

    def _split(self, data: bytes) -> list[RawLine]:
        """Take `data`, the next bytes of the file, and return the lines it completes."""
        if not data:
            return []
        self.last_growth = time.monotonic()
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
            lines.append(self._take_line(base + newline + 1))
            start = newline + 1
        self.refresh_head()
        return lines

    def flush_partial(self) -> RawLine | None:
        """Hand out a partial last line as it is; used when the file will not grow any more."""
        if not self.pending and not self.skipping:
            return None
        return self._take_line(self.read_position)

    def _take_line(self, end: int) -> RawLine:
        text, digest = decode_line(bytes(self.pending))
        if self.line_number is not None:
            self.line_number += 1
        line = RawLine(
            text, self.line_number or 0, self.offset, end - self.offset, digest, self.skipping
        )
        self.offset = end
        self.pending.clear()
        self.skipping = 0
        self.lines_read += 1
        return line

    def restart(self) -> None:
        """Read again from byte 0, for a file truncated or rewritten in place."""
        self.offset = 0
        self.line_number = 0
        self.committed_offset = 0
        self.committed_line_number = 0
        self._seek(0)
        self.head, self.head_size = head_sha256(self.handle)

    def commit(self) -> None:
        """Mark every line handed out so far as recorded."""
        self.committed_offset = self.offset
        self.committed_line_number = self.line_number

    def rewind(self) -> None:
        """Go back to the last recorded line, so the lines after it are handed out again."""
        self.offset = self.committed_offset
        self.line_number = self.committed_line_number
        self._seek(self.committed_offset)

    def _seek(self, position: int) -> None:
        self.pending.clear()
        self.skipping = 0
        self.read_position = position
        self.handle.seek(position)

    def checkpoint(self) -> Checkpoint:
        """Return the checkpoint at the last recorded line."""
        return Checkpoint(
            path=self.path, device=self.device, inode=self.inode, head_sha256=self.head,
            head_size=self.head_size, offset=self.committed_offset,
            line_number=self.committed_line_number, location=self.location,
        )  # fmt: skip

    def close(self) -> None:
        """Close the handle."""
        self.handle.close()
