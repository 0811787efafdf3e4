"""Detect in one large file with several processes, each taking ranges of whole lines in turn.

Detection of one line never depends on another, so a file split at line starts gives the same
findings as one pass, as long as each range is given the number of lines before it. Each worker
is a fork of the caller (the compiled rules are shared copy-on-write) and writes the output of
each range it takes to that range's temporary file, which the caller reads in range order.
Attribution by process does depend on earlier lines, so `irwatchd detect` runs it in the caller
over all ranges in order (see `row_transfer.py`), and its output is the same bytes as a single
pass writes.

The ranges shrink towards the end of the file, and a worker takes the next one when it is done
with its last. On a shared machine one CPU is often slower than the other for a while. With one
fixed half per worker, one worker finished up to 0.28 s before the other in 1.4 s runs on the
benchmark auth.log. The caller
counts the lines before each range while the workers run, and hands each range out only with
its count, so no worker waits for the whole file to be counted first.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
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

MIN_BYTES_PER_RANGE = 1 << 20
"""The smallest range handed out, so each one's fixed costs stay small beside its reading."""

_TASK = struct.Struct("<qq")
"""A range handed to a worker: its index and the number of lines before it. A pipe write of
fewer than PIPE_BUF bytes is atomic, so workers that read one task each never split one."""

MAX_RANGES = 128
"""The maximum number of ranges, and so of workers, for one file. Their tasks then take 2 KiB,
and a pipe holds at least one 4 KiB page, so handing them out never blocks, even after every
worker died."""


@dataclass(frozen=True, slots=True)
class FileRange:
    """Whole lines of a file from byte `start` to `end` (None: to the end of the file)."""

    start: int
    end: int | None
    lines_before: int


@dataclass(frozen=True, slots=True)
class RangePlan:
    """How many workers read a file, and the ranges they take in turn: (start, end) pairs."""

    workers: int
    spans: list[tuple[int, int | None]]


def split_ranges(path: str, jobs: int) -> RangePlan:
    """Split a file at line starts into ranges for at most `jobs` workers.

    Each range is a fraction of what is left after the ones before it, so the last ones are
    small and the workers finish close together. Line counts come later, in `run_in_parallel`.
    """
    size = os.path.getsize(path)
    workers = max(1, min(jobs, size // MIN_BYTES_PER_JOB, MAX_RANGES))
    if workers == 1:
        return RangePlan(1, [(0, None)])
    starts = [0]
    with open(path, "rb") as handle:
        while len(starts) < MAX_RANGES:
            left = size - starts[-1]
            step = max(MIN_BYTES_PER_RANGE, left // (2 * workers))
            if left - step < MIN_BYTES_PER_RANGE:
                break
            handle.seek(starts[-1] + step)
            handle.readline()
            position = handle.tell()
            if position >= size:
                break
            starts.append(position)
    ends: list[int | None] = [*starts[1:], None]
    return RangePlan(workers, list(zip(starts, ends, strict=True)))


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
    plan: RangePlan,
    source_type: str,
    max_line_bytes: int,
    now: datetime,
    render: Callable[[Finding], str],
    output: BinaryIO,
) -> bool:
    """Run forked workers over the plan's ranges and copy their rendered findings in order.

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

    with run_in_parallel(path, plan, write_range) as sinks:
        if sinks is None:
            return False
        for sink in sinks:
            shutil.copyfileobj(sink, output)
        return True


@contextmanager
def run_in_parallel(
    path: str, plan: RangePlan, write_range: RangeWriter
) -> Iterator[list[BinaryIO] | None]:
    """Run `write_range` on each range of the plan in forked workers; yield outputs in order.

    Each output is a temporary file, rewound, and closed when the block ends. Yield None
    when a worker failed: its traceback, or the signal that ended it, is on standard error.
    """
    if len(plan.spans) > MAX_RANGES:
        raise ValueError(
            f"a plan of {len(plan.spans)} ranges is invalid; split_ranges makes at most "
            f"{MAX_RANGES}"
        )
    sinks: list[BinaryIO] = [tempfile.TemporaryFile() for _ in plan.spans]  # noqa: SIM115 - closed below
    workers: list[int] = []
    sys.stdout.flush()
    sys.stderr.flush()
    tasks, publish = os.pipe()
    try:
        try:
            for _ in range(plan.workers):
                pid = os.fork()
                if pid == 0:  # pragma: no cover - runs in the child, which exits without returning
                    os.close(publish)
                    _run_worker(path, plan, tasks, write_range, sinks)
                workers.append(pid)
            # This process keeps the read end open, so a task write cannot fail when every
            # worker died early, and the tasks fit in the pipe (`MAX_RANGES`), so it cannot block.
            _publish_tasks(path, plan, publish)
        finally:
            # Also after a failed fork or count: the workers take the tasks handed out so far,
            # see the end of the pipe and exit, so none is left behind.
            os.close(publish)
            ok = all([_reaped(pid) for pid in workers])
        for sink in sinks:
            sink.seek(0)
        yield sinks if ok else None
    finally:
        os.close(tasks)
        for sink in sinks:
            sink.close()


def _reaped(pid: int) -> bool:
    """Wait for a worker and return whether it succeeded; report a signal that ended it."""
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = signal.strsignal(number) or "unknown"
        print(
            f"irwatchd detect: worker process {pid} was ended by signal {number} ({name}); "
            "its ranges were not read",
            file=sys.stderr,
        )
    return os.waitstatus_to_exitcode(status) == 0


def _publish_tasks(path: str, plan: RangePlan, publish: int) -> None:
    """Hand out each range in order, with the number of lines before it counted here."""
    lines = 0
    position = 0
    with open(path, "rb") as handle:
        # Read, not mapped: a log truncated while mapped would end this process with SIGBUS.
        for index, (start, _) in enumerate(plan.spans):
            while position < start:
                chunk = handle.read(min(1 << 20, start - position))
                if not chunk:
                    break
                lines += count_newlines(chunk)
                position += len(chunk)
            os.write(publish, _TASK.pack(index, lines))


def _run_worker(
    path: str, plan: RangePlan, tasks: int, write_range: RangeWriter, sinks: list[BinaryIO]
) -> None:  # pragma: no cover - runs in a forked child
    code = 0
    try:
        with open(path, "rb") as handle:
            while task := os.read(tasks, _TASK.size):
                if len(task) != _TASK.size:
                    raise RuntimeError(
                        f"a detect worker read {len(task)} bytes of a {_TASK.size}-byte task "
                        "from its pipe; this is a bug in irwatchd, please report it"
                    )
                index, lines_before = _TASK.unpack(task)
                start, end = plan.spans[index]
                handle.seek(start)
                with open(os.dup(sinks[index].fileno()), "wb") as out:
                    reader = _RangeReader(handle, end)
                    write_range(reader, FileRange(start, end, lines_before), out)  # type: ignore[arg-type]
    except BaseException:  # any failure must end the child with an error code
        traceback.print_exc()
        code = 70
    finally:
        sys.stderr.flush()
        os._exit(code)
