"""The daemon's log output survives a full disk: lost lines are counted, never raised."""

from __future__ import annotations

import json
import resource
import signal
from pathlib import Path

from irwatchd.logs import TolerantStream


def test_failed_log_writes_are_counted_then_reported(tmp_path: Path) -> None:
    path = tmp_path / "irwatchd.log"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    with path.open("a") as handle:
        output = TolerantStream(handle)
        output.write('{"event": "first"}\n')
        try:
            # Writes past the file's current size fail with EFBIG, as on a full disk.
            resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size, hard))
            for number in range(3):
                assert output.write(f'{{"event": "lost", "number": {number}}}\n') > 0
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, previous)
        assert output.lost_lines == 3
        output.write('{"event": "after"}\n')

    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [event["event"] for event in events] == ["first", "log_lines_lost", "after"]
    assert events[1]["lost_lines"] == 3
    assert output.lost_lines == 0
