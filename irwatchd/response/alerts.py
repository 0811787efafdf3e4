"""Alerts: one JSON file per alert in the state directory, and an optional webhook POST.

The webhook is sent from its own thread with retries and exponential back-off, so a slow or
dead receiver never delays detection. A full queue drops the newest alert with a warning
rather than grow without bound; every alert is still on disk as a file.
"""

from __future__ import annotations

import json
import queue
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from irwatchd.jsonfiles import write_json_atomic

log = structlog.get_logger(__name__)

QUEUE_LIMIT = 10_000


def write_alert_file(directory: Path, alert: dict[str, Any]) -> Path:
    """Write one alert as its own JSON file and return the path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = directory / f"{stamp}-{alert['alert_id']}.json"
    write_json_atomic(path, alert)
    return path


class WebhookSender:
    """POSTs alerts as JSON to one URL from a background thread, retrying with back-off."""

    def __init__(self, url: str, timeout: float, max_attempts: int, base_delay: float = 1.0) -> None:
        self.url = url
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_LIMIT)
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._stopping = threading.Event()
        self.sent = 0
        self.failed = 0
        self._thread.start()

    def submit(self, alert: dict[str, Any]) -> None:
        """Queue an alert without waiting."""
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            log.warning("webhook_queue_full", alert_id=alert.get("alert_id"), limit=QUEUE_LIMIT)

    def close(self, timeout: float = 5.0) -> None:
        """Stop after the queued alerts are tried, waiting at most `timeout` seconds."""
        self._queue.put(None)
        self._thread.join(timeout)
        self._stopping.set()

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            if alert is None:
                return
            self._deliver(alert)

    def _deliver(self, alert: dict[str, Any]) -> None:
        body = json.dumps(alert).encode()
        for attempt in range(1, self.max_attempts + 1):
            request = urllib.request.Request(  # noqa: S310 - the scheme is checked in config
                self.url, data=body, method="POST",
                headers={"Content-Type": "application/json", "User-Agent": "irwatchd"},
            )  # fmt: skip
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                    response.read()
                self.sent += 1
                log.info("webhook_sent", alert_id=alert["alert_id"], attempt=attempt)
                return
            except (urllib.error.URLError, OSError, TimeoutError) as error:
                delay = self.base_delay * 2 ** (attempt - 1)
                log.warning(
                    "webhook_retry" if attempt < self.max_attempts else "webhook_failed",
                    alert_id=alert["alert_id"], attempt=attempt, error=str(error),
                    retry_in_seconds=delay if attempt < self.max_attempts else None,
                )  # fmt: skip
                if attempt < self.max_attempts and self._stopping.wait(delay):
                    break
        self.failed += 1
        log.error("webhook_gave_up", alert_id=alert["alert_id"], url_host=self.url.split("/")[2])
        # TODO: keep undelivered alerts in a disk-backed queue so a restart still sends them.
