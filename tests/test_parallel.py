"""The range plan and hand-out of `detect --jobs`: every range once, with its line count."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import BinaryIO

import pytest

from irwatchd.detection import parallel
from irwatchd.detection.parallel import FileRange


@pytest.fixture
def small_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "MIN_BYTES_PER_JOB", 1024)
    monkeypatch.setattr(parallel, "MIN_BYTES_PER_RANGE", 256)


def _log(tmp_path: Path, lines: int) -> Path:
    log = tmp_path / "ranges.log"
    log.write_bytes(
        b"".join(b"line %d %s\n" % (number, b"x" * (number % 37)) for number in range(lines))
    )
    return log


@pytest.mark.usefixtures("small_ranges")
def test_ranges_start_at_lines_and_shrink(tmp_path: Path) -> None:
    log = _log(tmp_path, 2000)
    data = log.read_bytes()

    plan = parallel.split_ranges(str(log), 2)

    starts = [start for start, _ in plan.spans]
    sizes = [(end or len(data)) - start for start, end in plan.spans]
    assert plan.workers == 2
    assert starts[0] == 0
    assert plan.spans[-1][1] is None
    assert all(data[start - 1 : start] == b"\n" for start in starts[1:])
    assert [end for _, end in plan.spans[:-1]] == starts[1:]
    assert sizes[-1] < sizes[0] / 2, sizes


@pytest.mark.usefixtures("small_ranges")
def test_ranges_taken_once_with_line_counts(tmp_path: Path) -> None:
    log = _log(tmp_path, 3000)
    data = log.read_bytes()
    plan = parallel.split_ranges(str(log), 3)

    def copy_range(stream: BinaryIO, file_range: FileRange, sink: BinaryIO) -> None:
        sink.write(b"%d %d\n" % (file_range.start, file_range.lines_before))
        while chunk := stream.read(100):
            sink.write(chunk)

    with parallel.run_in_parallel(str(log), plan, copy_range) as sinks:
        assert sinks is not None
        outputs = [sink.read() for sink in sinks]

    copied = b""
    for (start, _), output in zip(plan.spans, outputs, strict=True):
        header, _, body = output.partition(b"\n")
        assert header == b"%d %d" % (start, data.count(b"\n", 0, start))
        copied += body
    assert len(plan.spans) > plan.workers
    assert copied == data


@pytest.mark.usefixtures("small_ranges")
def test_worker_failure_fails_run(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log = _log(tmp_path, 2000)
    plan = parallel.split_ranges(str(log), 2)
    doomed = plan.spans[2][0]

    def fail_on_third(stream: BinaryIO, file_range: FileRange, sink: BinaryIO) -> None:
        if file_range.start == doomed:
            raise OSError(f"range at {doomed} cannot be read")
        sink.write(stream.read())

    with parallel.run_in_parallel(str(log), plan, fail_on_third) as sinks:
        assert sinks is None

    assert f"range at {doomed} cannot be read" in capfd.readouterr().err


def test_small_file_stays_in_one_process(tmp_path: Path) -> None:
    log = _log(tmp_path, 100)

    plan = parallel.split_ranges(str(log), 4)

    assert plan.workers == 1
    assert plan.spans == [(0, None)]


@pytest.mark.usefixtures("small_ranges")
def test_all_workers_failing_ends_run(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # More tasks than both workers take before they fail: handing out the rest must not wait
    # for a reader that is gone.
    log = _log(tmp_path, 6000)
    plan = parallel.split_ranges(str(log), 2)

    def fail(stream: BinaryIO, file_range: FileRange, sink: BinaryIO) -> None:
        raise OSError(28, "No space left on device")

    with parallel.run_in_parallel(str(log), plan, fail) as sinks:
        assert sinks is None

    assert len(plan.spans) > 10
    assert capfd.readouterr().err.count("OSError: [Errno 28]") == 2


@pytest.mark.usefixtures("small_ranges")
def test_failed_fork_reaps_started_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = _log(tmp_path, 2000)
    plan = parallel.split_ranges(str(log), 2)
    real_fork = os.fork
    forks = []

    def fork_once() -> int:
        if forks:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        forks.append(1)
        return real_fork()

    def copy(stream: BinaryIO, file_range: FileRange, sink: BinaryIO) -> None:
        sink.write(stream.read())

    descriptors = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(parallel.os, "fork", fork_once)
    with pytest.raises(BlockingIOError), parallel.run_in_parallel(str(log), plan, copy):
        pytest.fail("the block ran after a failed fork")

    assert len(os.listdir("/proc/self/fd")) == descriptors
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # the started worker was reaped


@pytest.mark.usefixtures("small_ranges")
def test_killed_worker_is_named(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log = _log(tmp_path, 2000)
    plan = parallel.split_ranges(str(log), 2)

    def die(stream: BinaryIO, file_range: FileRange, sink: BinaryIO) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    with parallel.run_in_parallel(str(log), plan, die) as sinks:
        assert sinks is None

    assert "was ended by signal 9 (Killed)" in capfd.readouterr().err


def test_ranges_capped_and_last_one_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "MIN_BYTES_PER_JOB", 1024)
    monkeypatch.setattr(parallel, "MIN_BYTES_PER_RANGE", 16)
    log = _log(tmp_path, 20_000)
    size = log.stat().st_size

    plan = parallel.split_ranges(str(log), 300)
    two = parallel.split_ranges(str(log), 2)
    last_start = two.spans[-1][0]

    assert plan.workers == parallel.MAX_RANGES
    assert len(plan.spans) == parallel.MAX_RANGES
    assert size - last_start < two.spans[0][1] // 4  # type: ignore[operator]
