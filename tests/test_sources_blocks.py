"""Block reads of a followed file give the same lines, offsets and numbers as line reads."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from irwatchd.sources.followed import FollowedFile
from irwatchd.sources.lines import LineBlock, RawLine, lines_within

MAX_LINE_BYTES = 100

SHAPES = [
    b"Dec  4 10:00:00 host sshd[1]: Failed password for root from 192.0.2.1 port 22 ssh2",
    b"plain line",
    b"",
    b"crlf line\r",
    b"nul \x00 byte",
    b"bad utf-8 \xff\xfe here",
    "caf\u00e9 \u2603".encode(),
    b"y" * MAX_LINE_BYTES,
    b"z" * (MAX_LINE_BYTES + 1),
    b"w" * (3 * MAX_LINE_BYTES),
]
# Lines over the cap are rare, so most reads of 1000 bytes or more can come as one block.
WEIGHTS = [20] * (len(SHAPES) - 2) + [1, 1]


def write_mixed(path: Path, lines: int, seed: int) -> bytes:
    chooser = random.Random(seed)
    data = b"".join(line + b"\n" for line in chooser.choices(SHAPES, WEIGHTS, k=lines))
    path.write_bytes(data + b"partial tail")
    return data


def follow(path: Path, line_number: int | None) -> FollowedFile:
    handle = path.open("rb")
    return FollowedFile(
        path=str(path), location=str(path), group="test", source_type="syslog", handle=handle,
        device=0, inode=0, head="", head_size=0, offset=0, line_number=line_number,
        max_line_bytes=MAX_LINE_BYTES,
    )  # fmt: skip


def read_all(followed: FollowedFile, chunk: int, *, blocks: bool) -> tuple[list[RawLine], int]:
    """Read the whole file in `chunk`-byte reads; return the lines and how many came as blocks."""
    lines: list[RawLine] = []
    from_blocks = 0
    while True:
        before = followed.read_position
        batch = followed.read_block(chunk) if blocks else followed.read_lines(chunk)
        if isinstance(batch, LineBlock):
            from_blocks += batch.count
            lines.extend(batch.lines())
        else:
            lines.extend(batch)
        if followed.read_position == before:
            return lines, from_blocks


@pytest.mark.parametrize("line_number", [0, None])
@pytest.mark.parametrize("chunk", [7, 100, 1000, 1 << 20])
def test_block_reads_match_line_reads(tmp_path: Path, chunk: int, line_number: int | None) -> None:
    log = tmp_path / "mixed.log"
    write_mixed(log, 2000, seed=chunk)
    by_line = follow(log, line_number)
    by_block = follow(log, line_number)

    expected, _ = read_all(by_line, chunk, blocks=False)
    actual, from_blocks = read_all(by_block, chunk, blocks=True)

    assert actual == expected
    assert by_block.offset == by_line.offset
    assert by_block.line_number == by_line.line_number
    assert by_block.lines_read == by_line.lines_read
    assert by_block.flush_partial() == by_line.flush_partial()
    if chunk == 1000:
        # Smaller reads rarely end a line, and one 1 MiB read contains a line over the cap.
        assert from_blocks > 0


def test_block_has_no_cut_line(tmp_path: Path) -> None:
    log = tmp_path / "long.log"
    log.write_bytes(b"short\n" + b"x" * (MAX_LINE_BYTES + 1) + b"\nshort again\n")
    followed = follow(log, 0)

    batch = followed.read_block(1 << 20)

    assert isinstance(batch, list)
    assert [line.truncated_bytes for line in batch] == [0, 1, 0]


@pytest.mark.parametrize(
    ("block", "limit", "expected"),
    [
        (b"ab\n", 2, True),
        (b"abc\n", 2, False),
        (b"ab\nabc\n", 3, True),
        (b"ab\nabcd\nab\n", 3, False),
        (b"\n\n\n", 0, True),
        (b"a\n" * 1000 + b"b" * 50 + b"\n", 49, False),
    ],
)
def test_lines_within_limit(block: bytes, limit: int, expected: bool) -> None:
    assert lines_within(block, limit) is expected
