"""`status.json`: the daemon's state as `irwatchd status` and the metrics endpoint show it.

The daemon rewrites the file atomically every `STATUS_INTERVAL_SECONDS`, after each reload,
and once more on the way out with `running: false`. Readers must not trust `running` alone:
a killed daemon never writes its last copy, so `irwatchd status` also checks the PID lock.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from irwatchd.jsonfiles import read_json
from irwatchd.parsing.timestamps import format_rfc3339
from irwatchd.response.responder import Responder
from irwatchd.sources.tailer import Tailer

STATUS_FILE = "status.json"
STATUS_INTERVAL_SECONDS = 2.0


def utc_now() -> str:
    """Return the current UTC time in RFC 3339 with a `Z`."""
    return format_rfc3339(datetime.now(UTC)) or ""


RATE_WINDOW_SECONDS = 60.0
"""Span of the line rate in the status. Over the 2 s between writes, a log that cron writes
to once a minute shows 0 lines/s nearly all the time."""


class RateMeter:
    """Lines per second over the last `RATE_WINDOW_SECONDS` of samples of a running total."""

    def __init__(
        self, window_seconds: float = RATE_WINDOW_SECONDS, start: float | None = None
    ) -> None:
        self.window_seconds = window_seconds
        # (monotonic time, total) of each sample; the first is the base of the rate.
        begin = time.monotonic() if start is None else start
        self._samples: deque[tuple[float, int]] = deque([(begin, 0)])
        self.rate = 0.0

    def sample(self, total: int, now: float | None = None) -> float:
        """Take a sample of the running total and return the rate over the window."""
        moment = time.monotonic() if now is None else now
        samples = self._samples
        samples.append((moment, total))
        # Keep one sample at or before the window's start as the base.
        while len(samples) > 2 and samples[1][0] <= moment - self.window_seconds:
            samples.popleft()
        base_time, base_total = samples[0]
        if moment > base_time:
            # Never below 0: the total drops when a failed write makes lines count again later.
            self.rate = max(0.0, (total - base_total) / (moment - base_time))
        return self.rate


def file_rows(tailer: Tailer) -> list[dict[str, Any]]:
    """Return each followed file with its offset, current size and unread bytes."""
    rows = []
    for followed in tailer.files.values():
        size = _size(followed.handle.fileno())
        rows.append(
            {
                "path": followed.path,
                "group": followed.group,
                "source_type": followed.source_type,
                "offset": followed.offset,
                "size": size,
                "lag_bytes": max(0, size - followed.offset),
            }
        )
    return rows


def queue_depths(tailer: Tailer, responder: Responder) -> dict[str, int]:
    """Return the number of items waiting in each queue of the pipeline.

    The tailer's own backlog is `lag_bytes` per file. Here are the rotated files still being
    drained, the bytes of partial last lines, and the alerts waiting per delivery channel.
    """
    depths = {
        "rotated_files": len(tailer.retired),
        "partial_line_bytes": sum(len(item.pending) for item in tailer.files.values()),
    }
    depths.update(responder.queue_depths())
    return depths


@dataclass(frozen=True, slots=True)
class LastReload:
    """The outcome of the most recent reload, as shown by `irwatchd status`."""

    time: str
    result: str
    config_path: str | None
    error: str | None = None
    rules: int | None = None
    restart_required: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form written to `status.json`."""
        return {
            "time": self.time,
            "result": self.result,
            "config_path": self.config_path,
            "error": self.error,
            "rules": self.rules,
            "restart_required": list(self.restart_required),
        }


@dataclass(frozen=True, slots=True)
class WriteFailure:
    """The last failed write to the state directory, as shown by `irwatchd status`.

    `operation` names the step that failed: `record_findings` (the audit log or a response
    action after the finding's record), `save_checkpoints` or `block_upkeep`.
    """

    operation: str
    path: str
    error: str
    time: str
    hint: str

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form written to `status.json` as `last_error`."""
        return {
            "operation": self.operation,
            "path": self.path,
            "error": self.error,
            "time": self.time,
            "hint": self.hint,
        }


def status_line(files: int, rate: float, incidents: int, blocks: int) -> str:
    """Return the one-line summary systemd shows as the service status."""
    return (
        f"{files} files watched, {rate:.1f} lines/s, {incidents} open incidents, "
        f"{blocks} active blocks"
    )


def read_status(state_dir: Path) -> dict[str, Any] | None:
    """Return the last status a daemon wrote to `state_dir`, or None if there is none."""
    document = read_json(state_dir / STATUS_FILE, None)
    return document if isinstance(document, dict) else None


def _size(descriptor: int) -> int:
    try:
        return os.fstat(descriptor).st_size
    except OSError:
        return 0
