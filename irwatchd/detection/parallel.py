"""Detect in one large file with several processes, each reading a range of whole lines.

Detection of one line never depends on another, so a file split at line starts gives the same
findings as one pass, as long as each range is given the number of lines before it. Each worker
is a fork of the caller (the compiled rules are shared copy-on-write) and writes its output to
its own temporary file, which the caller reads in range order. Attribution by process does
depend on earlier lines, so `irwatchd detect` runs it in the caller over all ranges in order
(see `row_transfer.py`), and its output is the same bytes as a single pass writes.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from irwatchd.detection.batch import detect_file
from irwatchd.detection.engine import Detector
from irwatchd.detection.finding import Finding
from irwatchd.detection.newlines import count_newlines

MIN_BYTES_PER_JOB = 8 << 20
"""Smaller files are read by one process: a fork and a range split cost more than they save."""


@dataclass(frozen=True, slots=True)
class FileRange:
    """Whole lines of a file from byte `start` to `end` (None: to the end of the file)."""

    start: int
    end: int | None
    lines_before: int


def split_ranges(path: str, jobs: int) -> list[FileRange]:
    """Split a file into at most `jobs` ranges that start at line starts."""
    size = os.path.getsize(path)
    jobs = max(1, min(jobs, size // MIN_BYTES_PER_JOB))
    starts = [0]
    with open(path, "rb") as handle:
        for index in range(1, jobs):
            handle.seek(size * index // jobs)
            handle.readline()
            position = handle.tell()
            if starts[-1] < position < size:
                starts.append(position)
        counts = []
        newlines = 0
        handle.seek(0)
        position = 0
        # Read, not mapped: a log truncated while mapped would end this process with SIGBUS.
        for start in starts:
            while position < start:
                chunk = handle.read(min(1 << 20, start - position))
                if not chunk:
                    break
                newlines += count_newlines(chunk)
                position += len(chunk)
            counts.append(newlines)
    ends: list[int | None] = [*starts[1:], None]
    triples = zip(starts, ends, counts, strict=True)
    return [FileRange(start, end, count) for start, end, count in triples]


class _RangeReader:
    """A read-only stream over `handle` that stops at byte `end` (or at the end of the file)."""

    def __init__(self, handle: BinaryIO, end: int | None) -> None:
        self._handle = handle
        self._end = end

    def read(self, size: int = -1) -> bytes:
        if self._end is None:
            return self._handle.read(size)
        remaining = self._end - self._handle.tell()
        if remaining <= 0:
            return b""
        return self._handle.read(remaining if size < 0 else min(size, remaining))


RangeWriter = Callable[[BinaryIO, FileRange, BinaryIO], None]
"""Writes the output for one range to a sink, reading from a stream that starts at its start."""


def write_findings_in_parallel(
    detector: Detector,
    path: str,
    ranges: list[FileRange],
    source_type: str,
    max_line_bytes: int,
    now: datetime,
    render: Callable[[Finding], str],
    output: BinaryIO,
) -> bool:
    """Run one forked worker per range and copy their rendered findings to `output` in order.

    Return False when a worker failed; its traceback is on standard error and nothing is
    written, so a partial result never looks complete.
    """

    def write_range(stream: BinaryIO, file_range: FileRange, sink: BinaryIO) -> None:
        findings = detect_file(
            detector, stream, source_type, path, max_line_bytes, now=now,
            lines_before=file_range.lines_before, offset_before=file_range.start,
        )  # fmt: skip
        for finding in findings:
            sink.write(render(finding).encode())

    with run_in_parallel(path, ranges, write_range) as sinks:
        if sinks is None:
            return False
        for sink in sinks:
            shutil.copyfileobj(sink, output)
        return True


@contextmanager
def run_in_parallel(
    path: str, ranges: list[FileRange], write_range: RangeWriter
) -> Iterator[list[BinaryIO] | None]:
    """Run `write_range` in one forked worker per range; yield their outputs in range order.

    Each output is a temporary file, rewound, and closed when the block ends. Yield None
    when a worker failed: its traceback is on standard error.
    """
    sinks: list[BinaryIO] = [tempfile.TemporaryFile() for _ in ranges]  # noqa: SIM115 - closed below
    workers = []
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        for file_range, sink in zip(ranges, sinks, strict=True):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child, which exits without returning
                _run_worker(path, file_range, write_range, sink)
            workers.append(pid)
        ok = True
        for pid in workers:
            _, status = os.waitpid(pid, 0)
            ok = ok and os.waitstatus_to_exitcode(status) == 0
        for sink in sinks:
            sink.seek(0)
        yield sinks if ok else None
    finally:
        for sink in sinks:
            sink.close()


def _run_worker(
    path: str, file_range: FileRange, write_range: RangeWriter, sink: BinaryIO
) -> None:  # pragma: no cover - runs in a forked child
    code = 0
    try:
        with open(path, "rb") as handle, open(os.dup(sink.fileno()), "wb") as out:
            handle.seek(file_range.start)
            write_range(_RangeReader(handle, file_range.end), file_range, out)  # type: ignore[arg-type]
    except BaseException:  # any failure must end the child with an error code
        traceback.print_exc()
        code = 70
    finally:
        sys.stderr.flush()
        os._exit(code)
