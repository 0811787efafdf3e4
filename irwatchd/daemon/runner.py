"""The daemon's main loop: wait for a change, read new lines, detect, respond, checkpoint.

Everything that touches state runs on this one thread, in this order for each poll: read
complete lines, parse and detect them in one batch per file, hand each finding to the
responder (which writes the audit log before it acts), fsync the audit log, and only then
move the file checkpoints past those lines. A crash at any point therefore re-reads lines
whose findings may already be audited, never skips one; the dedup keys drop the repeats.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import structlog

from irwatchd import __version__
from irwatchd.audit.log import AuditLog, recent_dedup_keys
from irwatchd.audit.records import action_record
from irwatchd.config import Config
from irwatchd.daemon.lock import StateLock
from irwatchd.daemon.notify import Notifier
from irwatchd.daemon.settings import DaemonSettings, resolve_settings
from irwatchd.detection.engine import Detector
from irwatchd.detection.loader import build_detector
from irwatchd.errors import IrwatchdError
from irwatchd.jsonfiles import write_json_atomic
from irwatchd.parsing.dispatch import parse_line
from irwatchd.response.responder import Responder, StatePaths, dedup_key
from irwatchd.sources.checkpoints import CheckpointStore
from irwatchd.sources.tailer import LineBatch, Tailer
from irwatchd.sources.watcher import DirectoryWatcher

log = structlog.get_logger(__name__)

STATUS_INTERVAL_SECONDS = 2.0


class Daemon:
    """One running irwatchd: owns the tailer, detector, responder and audit log."""

    def __init__(
        self,
        config_path: Path | None,
        state_dir: str | None = None,
        watch: list[str] | None = None,
        *,
        force_polling: bool = False,
    ) -> None:
        self.config_path = config_path
        self.state_dir_option = state_dir
        self.watch_option = watch
        self.settings: DaemonSettings = resolve_settings(config_path, state_dir, watch)
        self.detector: Detector = build_detector(self.settings.loaded)
        self.paths = StatePaths(self.settings.state_dir)
        self.force_polling = force_polling or os.environ.get("IRWATCHD_FORCE_POLLING") == "1"
        self.wake = threading.Event()
        self.stop_requested = False
        self.reload_requested = False
        self.notifier = Notifier()
        self.lines_read = 0
        self.findings = 0
        self.last_reload: dict[str, object] | None = None
        self._seen_keys: set[str] = set()

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        if number == signal.SIGHUP:
            self.reload_requested = True
        else:
            self.stop_requested = True
        self.wake.set()

    def run(self) -> int:
        """Run until SIGTERM or SIGINT; return the exit code."""
        self.paths.create()
        lock = StateLock(self.paths.root)
        lock.acquire()
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(number, self._on_signal)
        audit = AuditLog(self.paths.audit_log)
        self._seen_keys = recent_dedup_keys(self.paths.audit_log)
        responder = Responder(self.settings.loaded, self.paths, audit)
        checkpoints = CheckpointStore(self.paths.checkpoints)
        config = self.settings.loaded.config
        tailer = Tailer(
            self.settings.watch_specs, checkpoints,
            start_at=config.start_at, max_line_bytes=config.max_line_bytes,
        )  # fmt: skip
        watcher = DirectoryWatcher(self.wake, force_polling=self.force_polling,
                                   poll_seconds=min(1.0, config.poll_interval_seconds))  # fmt: skip
        try:
            watcher.update(tailer.directories())
            audit.append(action_record("start", "success", details={
                "version": __version__, "pid": os.getpid(),
                "config_path": str(self.settings.loaded.path),
                "watch": [spec.path for spec in self.settings.watch_specs],
            }))  # fmt: skip
            self._poll(tailer, responder, audit, checkpoints)
            log.info("daemon_started", pid=os.getpid(), state_dir=str(self.paths.root),
                     files=len(tailer.files), rules=len(self.detector.rules), mode=watcher.mode)  # fmt: skip
            self.notifier.ready(self._status_line(tailer, responder))
            last_status = 0.0
            while not self.stop_requested:
                self.wake.wait(config.poll_interval_seconds)
                self.wake.clear()
                if self.reload_requested:
                    self.reload_requested = False
                    config = self._reload(tailer, responder, audit, watcher) or config
                watcher.restart_if_dead(tailer.directories())
                watcher.update(tailer.directories())
                self._poll(tailer, responder, audit, checkpoints)
                if time.monotonic() - last_status >= STATUS_INTERVAL_SECONDS:
                    last_status = time.monotonic()
                    self._write_status(tailer, responder, watcher)
            self.notifier.stopping()
            log.info("daemon_stopping", pid=os.getpid())
            self._poll(tailer, responder, audit, checkpoints)
            audit.append(action_record("stop", "success", details={"pid": os.getpid()}))
        finally:
            watcher.stop()
            responder.close()
            audit.close()
            tailer.close()
            self._write_status(tailer, responder, watcher, running=False)
            lock.release()
        log.info("daemon_stopped", lines_read=self.lines_read, findings=self.findings)
        return 0

    def _poll(self, tailer: Tailer, responder: Responder, audit: AuditLog, checkpoints: CheckpointStore) -> None:
        while True:
            batches = tailer.poll()
            if not batches:
                return
            for batch in batches:
                self._process(batch, responder)
            audit.sync()
            checkpoints.save(tailer.checkpoints_now())
            if self.stop_requested or self.reload_requested:
                return

    def _process(self, batch: LineBatch, responder: Responder) -> None:
        followed = batch.file
        now = datetime.now(UTC)
        records = []
        for line in batch.lines:
            if line.truncated_bytes:
                log.warning("line_truncated", path=followed.path, offset=line.offset,
                            kept_bytes=len(line.text.encode()), skipped_bytes=line.truncated_bytes)  # fmt: skip
            records.append(parse_line(
                line.text, followed.source_type, now, path=followed.path,
                line_number=line.number, offset=line.offset, raw_sha256=line.invalid_utf8_sha256,
            ))  # fmt: skip
        self.lines_read += len(records)
        for finding in self.detector.detect(records):
            self.findings += 1
            key = dedup_key(finding)
            if key in self._seen_keys:
                responder.windows.observe(finding, now)
                continue
            responder.handle(finding)

    def _reload(
        self, tailer: Tailer, responder: Responder, audit: AuditLog, watcher: DirectoryWatcher
    ) -> Config | None:
        self.notifier.reloading()
        log.info("reload_started", config_path=str(self.config_path))
        try:
            settings = resolve_settings(self.config_path, self.state_dir_option, self.watch_option)
            detector = build_detector(settings.loaded)
        except IrwatchdError as error:
            log.error("reload_failed", config_path=str(self.config_path), error=str(error),
                      hint="fix the config and send SIGHUP again; the old config keeps running")  # fmt: skip
            audit.append(action_record("reload", "failure", details={"error": str(error)}))
            self.last_reload = {"time": time.time(), "result": "failure", "error": str(error)}
            self.notifier.ready(self._status_line(tailer, responder))
            return None
        self.settings = settings
        self.detector = detector
        responder.apply_config(settings.loaded)
        tailer.specs = settings.watch_specs
        config = settings.loaded.config
        tailer.max_line_bytes = config.max_line_bytes
        watcher.update(tailer.directories())
        audit.append(action_record("reload", "success", details={"rules": len(detector.rules)}))
        self.last_reload = {"time": time.time(), "result": "success"}
        log.info("reload_finished", rules=len(detector.rules))
        self.notifier.ready(self._status_line(tailer, responder))
        return config

    def _status_line(self, tailer: Tailer, responder: Responder) -> str:
        return (
            f"{len(tailer.files)} files, {self.lines_read} lines, {len(responder.incidents)} open "
            f"incidents, {len(responder.blocks.active())} blocks"
        )

    def _write_status(self, tailer: Tailer, responder: Responder, watcher: DirectoryWatcher, *, running: bool = True) -> None:
        document = {
            "running": running,
            "pid": os.getpid(),
            "version": __version__,
            "updated_at": time.time(),
            "config_path": str(self.settings.loaded.path),
            "state_dir": str(self.paths.root),
            "watch_mode": watcher.mode,
            "lines_read": self.lines_read,
            "findings": self.findings,
            "open_incidents": len(responder.incidents),
            "active_blocks": len(responder.blocks.active()),
            "last_reload": self.last_reload,
            "files": [
                {"path": item.path, "offset": item.offset,
                 "size": _size(item.handle.fileno()), "lag_bytes": _size(item.handle.fileno()) - item.offset}
                for item in tailer.files.values()
            ],  # fmt: skip
        }
        try:
            write_json_atomic(self.paths.root / "status.json", document)
        except OSError as error:
            log.warning("status_write_failed", error=str(error))
        self.notifier.status(self._status_line(tailer, responder))


def _size(descriptor: int) -> int:
    try:
        return os.fstat(descriptor).st_size
    except OSError:
        return 0
