"""The main loop's wake-up: set from signal handlers and threads without taking a lock."""

from __future__ import annotations

import contextlib
import os
import select


class Waker:
    """Wakes the daemon's main loop from a signal handler, the watchdog thread or a reload.

    A signal handler runs on the main thread between two bytecodes, also inside
    `threading.Event.wait` or `clear` while they hold the event's lock. `Event.set` in the
    handler then waits for that same lock, so the main thread stops for good and no later
    SIGHUP or SIGTERM reaches the loop. A CI run of the reload tests hung this way.

    Writing a byte to a non-blocking pipe takes no lock. `wait` polls the pipe's read end,
    which a signal interrupts and Python resumes once the handler has run.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll = select.poll()
        self._poll.register(self._read, select.POLLIN)

    def set(self) -> None:
        """Wake the loop now, or as soon as it next waits."""
        # A full pipe contains earlier wake-ups, so the loop wakes anyway.
        with contextlib.suppress(BlockingIOError):
            os.write(self._write, b"\0")

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a wake-up; return whether one came."""
        # In milliseconds, not rounded: poll rounds a fraction up, so 0.4 ms waits 1 ms.
        return bool(self._poll.poll(max(0.0, timeout * 1000)))

    def clear(self) -> None:
        """Forget the wake-ups so far; a later `set` wakes the next `wait`."""
        with contextlib.suppress(BlockingIOError):  # raised once the pipe is empty
            while os.read(self._read, 4096):
                pass
