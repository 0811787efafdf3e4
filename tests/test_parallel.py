"""The range plan and hand-out of `detect --jobs`: every range once, with its line count."""

from __future__ import annotations

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
