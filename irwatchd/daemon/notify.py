"""systemd's notify protocol: datagrams of `KEY=value` lines to `$NOTIFY_SOCKET`.

The protocol is small enough to speak directly (see sd_notify(3)): one datagram per message,
sent to a Unix socket whose path starts with `@` for the abstract namespace. The watchdog
interval comes from `$WATCHDOG_USEC`, and only applies when `$WATCHDOG_PID` is unset or ours.
"""

from __future__ import annotations

import os
import socket
import time

from irwatchd.logger import get_logger

log = get_logger(__name__)


def monotonic_usec() -> int:
    """Return CLOCK_MONOTONIC in microseconds, the clock systemd expects in MONOTONIC_USEC."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def watchdog_seconds(environ: dict[str, str] | os._Environ[str] = os.environ) -> float | None:
    """Return the watchdog interval systemd set for this process, or None when there is none."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and owner != str(os.getpid()):
        return None
    return int(usec) / 1_000_000


class Notifier:
    """Sends readiness, status and watchdog pings to systemd; a no-op outside systemd.

    The environment variables are removed after reading, as sd_notify's `unset_environment`
    does, so processes the daemon starts (nft, a block command) cannot notify in its name.
    """

    def __init__(self) -> None:
        address = os.environ.pop("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if address:
            # A leading @ names a socket in the abstract namespace.
            self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval = watchdog_seconds()
        os.environ.pop("WATCHDOG_USEC", None)
        os.environ.pop("WATCHDOG_PID", None)
        self._last_ping = 0.0
        self._stopping = False
        self._socket: socket.socket | None = None

    def send(self, *fields: str) -> None:
        """Send the given `KEY=value` fields as one datagram; errors are logged, not raised."""
        if self.address is None:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
            self._socket.sendto("\n".join(fields).encode(), self.address)
        except OSError as error:
            log.warning("notify_failed", error=str(error), fields=fields)

    def ready(self, status: str) -> None:
        """Tell systemd that start-up or a reload finished."""
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        """Tell systemd a reload started, with the monotonic time systemd 253+ requires."""
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", "STATUS=reloading")

    def stopping(self) -> None:
        """Tell systemd shutdown started; no watchdog pings follow."""
        self._stopping = True
        self.send("STOPPING=1", "STATUS=stopping")

    def status(self, text: str) -> None:
        """Set the one-line status `systemctl status` shows."""
        self.send(f"STATUS={text}")

    def wait_seconds(self, default: float) -> float:
        """Return how long the main loop may sleep and still ping the watchdog in time.

        Waking every quarter interval and pinging once half an interval has passed keeps the
        gap between pings under three quarters of the interval, whatever the loop's timing.
        """
        if self.watchdog_interval is None:
            return default
        return min(default, self.watchdog_interval / 4)

    def watchdog_tick(self) -> None:
        """Ping the watchdog if half its interval passed since the last ping.

        The main loop calls this on every pass, so the pings stop when the loop stops.
        """
        if self.watchdog_interval is None or self._stopping:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_interval / 2:
            self._last_ping = now
            self.send("WATCHDOG=1")
