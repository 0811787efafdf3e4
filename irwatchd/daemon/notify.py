"""systemd's notify protocol: datagrams of `KEY=value` lines to `$NOTIFY_SOCKET`."""

from __future__ import annotations

import os
import socket
import time

import structlog

log = structlog.get_logger(__name__)


class Notifier:
    """Sends readiness and status to systemd; does nothing when not started by systemd."""

    def __init__(self) -> None:
        address = os.environ.get("NOTIFY_SOCKET")
        self.address: str | None = None
        if address:
            # A leading @ names a socket in the abstract namespace.
            self.address = "\0" + address[1:] if address.startswith("@") else address
        self._socket: socket.socket | None = None

    def send(self, *fields: str) -> None:
        """Send the given `KEY=value` fields as one datagram; errors are logged, not raised."""
        if self.address is None:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto("\n".join(fields).encode(), self.address)
        except OSError as error:
            log.warning("notify_failed", error=str(error), fields=fields)

    def ready(self, status: str) -> None:
        """Tell systemd start-up or a reload finished."""
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        """Tell systemd a reload started, with the monotonic time it requires."""
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> None:
        """Tell systemd shutdown started."""
        self.send("STOPPING=1")

    def status(self, text: str) -> None:
        """Set the one-line status `systemctl status` shows."""
        self.send(f"STATUS={text}")

    def watchdog(self) -> None:
        """Ping the service watchdog."""
        self.send("WATCHDOG=1")
