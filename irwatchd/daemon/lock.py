"""The state-directory lock: one daemon per state directory."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from irwatchd.errors import AlreadyRunningError


class StateLock:
    """An exclusive `flock` on `irwatchd.pid` in the state directory, holding our PID."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "irwatchd.pid"
        self._descriptor: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise `AlreadyRunningError` naming the PID that holds it."""
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            raise AlreadyRunningError(
                f"another irwatchd (PID {holder}) is running on {self.path.parent}; "
                "stop it first or pass a different --state-dir"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        self._descriptor = descriptor

    def release(self) -> None:
        """Release the lock and remove the PID file."""
        if self._descriptor is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._descriptor)
            self._descriptor = None


def read_pid(state_dir: Path) -> int | None:
    """Return the PID of the daemon holding the lock on `state_dir`, or None if none does."""
    path = state_dir / "irwatchd.pid"
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else None
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        return None
    finally:
        os.close(descriptor)
