"""Find and signal a running daemon from another process, for `irwatchd status` and `reload`.

The PID lock is the only proof that a daemon runs: `status.json` may be left over from a
daemon that was killed. Both live in the state directory, which the commands find the same
way `irwatchd run` does: `--state-dir`, else the config's `state_dir`.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from irwatchd.daemon.lock import read_pid
from irwatchd.daemon.statusfile import STATUS_INTERVAL_SECONDS, read_status
from irwatchd.errors import NoPermissionError, UnavailableError
from irwatchd.parsing.timestamps import parse_iso8601

STALE_AFTER_SECONDS = 5 * STATUS_INTERVAL_SECONDS
"""A running daemon whose status is older than this is not making progress."""

LOW_SPACE_BYTES = 1 << 20
"""Free space below which the state directory's file system counts as full."""


@dataclass(frozen=True, slots=True)
class DaemonState:
    """The daemon of one state directory, as another process finds it: lock and status."""

    state_dir: Path
    pid: int | None
    status: dict[str, Any] | None
    status_age_seconds: float | None
    free_bytes: int | None = None
    """Space left to this user on the state directory's file system; None if unknown."""

    @property
    def is_out_of_space(self) -> bool:
        """Whether the state directory's file system has less than `LOW_SPACE_BYTES` free."""
        return self.free_bytes is not None and self.free_bytes < LOW_SPACE_BYTES

    @property
    def is_running(self) -> bool:
        """Whether a process holds the state directory's lock."""
        return self.pid is not None

    @property
    def is_stale(self) -> bool:
        """Whether the daemon runs but has not written its status for `STALE_AFTER_SECONDS`."""
        if not self.is_running:
            return False
        return self.status_age_seconds is None or self.status_age_seconds > STALE_AFTER_SECONDS


def inspect(state_dir: Path) -> DaemonState:
    """Read the PID lock and the status file of a state directory."""
    pid = read_pid(state_dir)
    status = read_status(state_dir)
    age = None
    if status is not None:
        updated = parse_iso8601(str(status.get("updated_at", "")))
        if updated is not None:
            age = max(0.0, (datetime.now(UTC) - updated).total_seconds())
    try:
        free: int | None = shutil.disk_usage(state_dir).free
    except OSError:
        free = None  # a missing or unreadable state directory: the caller reports that
    return DaemonState(state_dir, pid, status, age, free)


def require_running(state: DaemonState) -> int:
    """Return the daemon's PID, or raise `UnavailableError` when none runs."""
    if state.pid is None:
        raise UnavailableError(
            f"irwatchd is not running on {state.state_dir} (no process holds "
            f"{state.state_dir / 'irwatchd.pid'}); start it with `systemctl start irwatchd` "
            "or `irwatchd run`, or pass the --state-dir it runs with"
        )
    return state.pid


def send_signal(pid: int, number: signal.Signals) -> None:
    """Signal the daemon, mapping the OS errors to irwatchd errors."""
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        raise UnavailableError(f"irwatchd (PID {pid}) exited before it got {number.name}") from None
    except PermissionError:
        raise NoPermissionError(
            f"not allowed to send {number.name} to irwatchd (PID {pid}); run this command as "
            "root or as the user the daemon runs as"
        ) from None


def wait_for_reload(state_dir: Path, reloads_before: int, timeout: float) -> dict[str, Any] | None:
    """Wait until the daemon reports a reload after `reloads_before`; return its outcome.

    Returns None when `timeout` seconds pass first. The daemon rewrites `status.json` as
    soon as a reload finishes, so this polls the file every 0.1 s.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = read_status(state_dir)
        if status is not None and int(status.get("reloads", 0)) > reloads_before:
            outcome = status.get("last_reload")
            return outcome if isinstance(outcome, dict) else None
        time.sleep(0.1)
    return None
