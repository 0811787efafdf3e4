"""Disk-backed alert queues: one folder per channel, one JSON file per pending alert.

Why a folder of files and not a JSONL spool: removing a delivered alert is one `unlink`,
and recording a failed attempt rewrites one small file atomically. No step ever rewrites or
compacts a shared spool, so a crash cannot lose another alert. The file names start with a
UTC time stamp and a counter, so sorting them gives the order the alerts were queued in.

Each channel has one sender thread, so detection waits for a disk write, never for a
receiver. A file is deleted only after the receiver accepted the alert. A crash between
that accept and the delete sends the alert again after the restart, with the same
`X-Irwatchd-Alert-Id`, which is what a receiver deduplicates on. After `max_attempts`
failures the alert moves to `alerts/dead/<channel>.jsonl`, the dead-letter file.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from msgspec.structs import replace

from irwatchd.config import Alerts
from irwatchd.errors import ConfigError
from irwatchd.jsonfiles import read_json, write_json_atomic
from irwatchd.logger import get_logger
from irwatchd.parsing.timestamps import format_rfc3339

if TYPE_CHECKING:
    # The senders import urllib, smtplib and ssl, about 8 MiB of RSS. So the module is loaded
    # only once a channel is configured, and `scan` or a daemon without channels skips it.
    from irwatchd.response.channels import ChannelSettings, Sender

log = get_logger(__name__)

IDLE_WAIT_SECONDS = 60.0
_COUNTER = itertools.count()


class AlertQueue:
    """The pending alerts of one channel, as files in one folder."""

    def __init__(self, directory: Path, dead_letter: Path) -> None:
        self.directory = directory
        self.dead_letter = dead_letter
        directory.mkdir(parents=True, exist_ok=True)

    def put(self, alert: dict[str, Any]) -> Path:
        """Store an alert durably and return its file."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.directory / f"{stamp}-{next(_COUNTER):06d}-{alert['alert_id']}.json"
        write_json_atomic(path, {"alert": alert, "attempts": 0, "last_error": None}, mode=0o600)
        return path

    def pending(self) -> list[Path]:
        """Return the queued files, oldest first; temporary files of a write are left out."""
        return sorted(
            path for path in self.directory.glob("*.json") if not path.name.startswith(".")
        )

    def record_failure(self, path: Path, entry: dict[str, Any], error: str) -> None:
        """Count a failed attempt in the alert's file."""
        entry["attempts"] = int(entry.get("attempts", 0)) + 1
        entry["last_error"] = error
        entry["last_attempt_at"] = format_rfc3339(datetime.now(UTC))
        write_json_atomic(path, entry, mode=0o600)

    def move_to_dead_letter(self, path: Path, entry: dict[str, Any]) -> None:
        """Append the alert to the dead-letter file, fsync it, then drop it from the queue."""
        self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(
            entry | {"dead_at": format_rfc3339(datetime.now(UTC))}, ensure_ascii=False
        )
        with self.dead_letter.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        path.unlink(missing_ok=True)


class ChannelWorker:
    """The thread that drains one channel's queue, backing off exponentially while it fails."""

    def __init__(self, sender: Sender, queue: AlertQueue, settings: Alerts) -> None:
        self.sender = sender
        self.queue = queue
        self.max_attempts = settings.max_attempts
        self.retry_base = settings.retry_base_seconds
        self.retry_max = settings.retry_max_seconds
        self.sent = 0
        self.failed_attempts = 0
        self.dead = 0
        self._failures_in_row = 0
        self._retry_at = 0.0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"alerts-{sender.name}", daemon=True)

    @property
    def name(self) -> str:
        """The channel name."""
        return self.sender.name

    def start(self) -> None:
        """Start the thread; it first sends what an earlier run left queued."""
        self._thread.start()

    def notify(self) -> None:
        """Wake the thread because a new alert was queued."""
        self._wake.set()

    def close(self, timeout: float) -> None:
        """Stop the thread; what is still queued stays on disk for the next start."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        log.info("alert_channel_started", channel=self.name, pending=len(self.queue.pending()))
        while not self._stopping.is_set():
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                self._stopping.wait(wait)
                continue
            try:
                emptied = self._drain()
            except OSError as error:
                # A full disk or a permission problem in the queue folder: keep the thread
                # alive and try again after the back-off.
                self._back_off()
                log.error(
                    "alert_queue_failed",
                    channel=self.name,
                    error=str(error),
                    folder=str(self.queue.directory),
                )
                continue
            if emptied:
                self._wake.wait(IDLE_WAIT_SECONDS)
                self._wake.clear()
        log.info("alert_channel_stopped", channel=self.name, pending=len(self.queue.pending()))

    def _drain(self) -> bool:
        """Send queued alerts in order; return True when the queue is empty."""
        from irwatchd.response.channels import DeliveryError  # loaded with the sender

        for path in self.queue.pending():
            if self._stopping.is_set():
                return False
            try:
                entry = read_json(path, None)
                alert = entry["alert"] if entry is not None else None
                alert_id = alert["alert_id"] if alert is not None else None
            except (ValueError, KeyError, TypeError) as error:
                self._quarantine(path, str(error))
                continue
            if alert is None:
                continue  # deleted in the meantime
            try:
                self.sender.send(alert)
            except DeliveryError as error:
                self._failed(path, entry, str(error))
                return False
            path.unlink(missing_ok=True)
            self.sent += 1
            self._failures_in_row = 0
            log.info(
                "alert_sent",
                channel=self.name,
                alert_id=alert_id,
                attempt=int(entry.get("attempts", 0)) + 1,
            )
        return True

    def _quarantine(self, path: Path, error: str) -> None:
        """Move an unreadable queue file aside as `<name>.bad` so it stops blocking the queue."""
        path.replace(path.with_suffix(".bad"))
        log.error(
            "alert_queue_file_unreadable",
            channel=self.name,
            path=str(path),
            error=error,
            moved_to=str(path.with_suffix(".bad")),
        )

    def _back_off(self) -> float:
        self._failures_in_row += 1
        delay = float(min(self.retry_base * 2 ** (self._failures_in_row - 1), self.retry_max))
        self._retry_at = time.monotonic() + delay
        return delay

    def _failed(self, path: Path, entry: dict[str, Any], error: str) -> None:
        alert_id = entry["alert"]["alert_id"]
        self.failed_attempts += 1
        self.queue.record_failure(path, entry, error)
        delay = self._back_off()
        if entry["attempts"] >= self.max_attempts:
            self.queue.move_to_dead_letter(path, entry)
            self.dead += 1
            log.error(
                "alert_dead_lettered",
                channel=self.name,
                alert_id=alert_id,
                attempts=entry["attempts"],
                error=error,
                dead_letter=str(self.queue.dead_letter),
            )
            return
        log.warning(
            "alert_retry",
            channel=self.name,
            alert_id=alert_id,
            attempt=entry["attempts"],
            error=error,
            retry_in_seconds=round(delay, 3),
        )


class AlertDispatcher:
    """Queues each alert for every configured channel and runs one worker per channel."""

    def __init__(self, alerts_dir: Path) -> None:
        self.queue_root = alerts_dir / "queue"
        self.dead_root = alerts_dir / "dead"
        self.workers: dict[str, ChannelWorker] = {}
        self._signatures: dict[str, object] = {}

    def apply(self, settings: Alerts, *, strict: bool = True) -> None:
        """Start, restart or stop workers so they match the configured channels.

        A channel whose secret cannot be resolved raises `ConfigError` when `strict` (at
        start). On a reload (`strict=False`) it is logged and keeps its running worker.
        """
        channels: dict[str, ChannelSettings] = {
            channel.name: channel for channel in settings.all_channels()
        }
        # Structs and `Secret` compare by value, so a changed secret restarts the worker too.
        common = replace(settings, channels=[])
        signatures = {name: (channel, common) for name, channel in channels.items()}
        senders: dict[str, Sender] = {}
        for name, channel in channels.items():
            if name in self.workers and signatures[name] == self._signatures.get(name):
                continue
            from irwatchd.response.channels import build_sender

            try:
                senders[name] = build_sender(channel)
            except ConfigError as error:
                if strict:
                    raise
                log.error(
                    "alert_channel_invalid",
                    channel=name,
                    error=str(error),
                    hint="the channel keeps its previous settings until fixed",
                )
        for name in list(self.workers):
            if name in senders or name not in channels:
                self.workers.pop(name).close(timeout=2.0)
                self._signatures.pop(name, None)
        self._warn_orphaned(set(channels))
        for name, sender in senders.items():
            queue = AlertQueue(self.queue_root / name, self.dead_root / f"{name}.jsonl")
            worker = ChannelWorker(sender, queue, settings)
            self.workers[name] = worker
            self._signatures[name] = signatures[name]
            worker.start()

    def _warn_orphaned(self, configured: set[str]) -> None:
        """Log queue folders of channels no longer configured that still hold alerts."""
        if not self.queue_root.is_dir():
            return
        for folder in sorted(self.queue_root.iterdir()):
            pending = len(list(folder.glob("*.json"))) if folder.is_dir() else 0
            if folder.name not in configured and pending:
                log.warning(
                    "alert_queue_orphaned",
                    channel=folder.name,
                    pending=pending,
                    folder=str(folder),
                    hint="configure the channel again to send them, or move them away",
                )

    def submit(self, alert: dict[str, Any]) -> list[str]:
        """Queue the alert on disk for every channel and return the channels that took it."""
        queued = []
        for name, worker in self.workers.items():
            try:
                worker.queue.put(alert)
            except OSError as error:
                log.error(
                    "alert_queue_failed",
                    channel=name,
                    alert_id=alert["alert_id"],
                    error=str(error),
                    folder=str(worker.queue.directory),
                )
                continue
            worker.notify()
            queued.append(name)
        return queued

    def status(self) -> dict[str, dict[str, int]]:
        """Return per-channel counts: pending, sent, failed attempts and dead-lettered."""
        return {
            name: {
                "pending": len(worker.queue.pending()),
                "sent": worker.sent,
                "failed_attempts": worker.failed_attempts,
                "dead": worker.dead,
            }
            for name, worker in self.workers.items()
        }

    def close(self, timeout: float = 5.0) -> None:
        """Stop every worker; undelivered alerts stay queued on disk."""
        for worker in self.workers.values():
            worker.close(timeout)
        self.workers.clear()
        self._signatures.clear()
