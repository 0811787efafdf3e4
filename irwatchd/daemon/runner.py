"""The daemon's main loop: wait for a change, read new lines, detect, respond, checkpoint.

Everything that touches state runs on this one thread. Each poll reads complete lines,
parses and detects them in one batch per file, and hands each finding to the responder. The
responder then applies the read's blocks and writes their audit records. When a read leaves
many tickets and alert files waiting, they wait until the backlog is read (within bounds),
so that a burst's blocks do not wait for them. The loop then writes them, fsyncs the audit
log, and only then moves the file checkpoints past those lines. A crash at any point
therefore re-reads lines whose findings may already be audited and never skips one. The
dedup keys drop the repeats, and at the next start `_refile` writes the files they miss.

Signals only set flags and wake the loop, through a pipe that takes no lock (`daemon.waker`).
A reload validates the new configuration on a worker thread (`daemon.reloading`) while this
thread goes on detecting with the old one. It swaps it in between two polls, at the latest at
the next checkpoint of a long backlog, so files, offsets, windows, incidents and blocks carry
over.
"""

from __future__ import annotations

import gc
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from irwatchd import __version__
from irwatchd.audit.log import AuditLog
from irwatchd.audit.records import action_record
from irwatchd.config import Config
from irwatchd.daemon.lock import StateLock
from irwatchd.daemon.notify import Notifier
from irwatchd.daemon.recovery import (
    findings_after,
    recover,
    write_failure_hint,
)
from irwatchd.daemon.reloading import ReloadJob
from irwatchd.daemon.settings import DaemonSettings, ValidatedConfiguration, resolve_settings
from irwatchd.daemon.statusfile import (
    STATUS_FILE,
    STATUS_INTERVAL_SECONDS,
    LastReload,
    RateMeter,
    WriteFailure,
    file_rows,
    queue_depths,
    status_line,
    utc_now,
)
from irwatchd.daemon.waker import Waker
from irwatchd.detection.batch import detect_lines_block
from irwatchd.detection.engine import Detector
from irwatchd.detection.loader import build_detector
from irwatchd.detection.process_context import ProcessContext
from irwatchd.errors import CantCreateError, NoPermissionError
from irwatchd.jsonfiles import write_json_atomic
from irwatchd.logger import get_logger
from irwatchd.logs import flush_suppressed, report_suppressed
from irwatchd.metrics import CountingAuditLog, DaemonMetrics, MetricsServer
from irwatchd.parsing.dispatch import parse_line
from irwatchd.parsing.record import LogRecord
from irwatchd.response.responder import (
    FLUSH_EVERY_PENDING,
    MAX_PENDING_FILES,
    Responder,
    StatePaths,
    collector_paused,
    dedup_key,
)
from irwatchd.sources.checkpoints import CheckpointStore
from irwatchd.sources.discovery import UNREADABLE_HINT
from irwatchd.sources.tailer import LineBatch, Tailer
from irwatchd.sources.watcher import DirectoryWatcher

log = get_logger(__name__)

DEFER_FILES_FROM = 1_000
"""Waiting ticket and alert files from which the daemon reads on before it writes them.

Fewer are written after the read that queued them, together with the checkpoints. A burst
of new sources queues more, and those wait so that its later blocks do not wait for them.
"""

UPKEEP_EVERY_SECONDS = 2.0
"""Maximum time a backlog keeps the main loop from its upkeep, counted at checkpoints: applying
a validated reload, and lifting the blocks that expired or that `irwatchd blocks` removed."""

CHECKPOINT_EVERY_BYTES = 8 << 20
"""Bytes read after which waiting files and the checkpoints are written, even while more
lines wait. This bounds what a crash reads again and the dedup keys held for a retry. It is
above the 5 MB of a burst of 10,000 sources with five sshd failures each, so the blocks of
such a burst do not wait for its files."""


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
        self.process_context = ProcessContext()
        # Made in `run`: detaching closes every descriptor made before it, and the pipe's
        # numbers would then belong to other files, such as the audit log.
        self.wake: Waker | None = None
        self.stop_requested = False
        self.reload_requested = False
        self.notifier = Notifier()
        self.metrics = DaemonMetrics()
        self.metrics_server: MetricsServer | None = None
        self.metrics_error: str | None = None
        self.lines_read = 0
        # Lines read since the last checkpoint, which a failed write makes the daemon read again.
        self._lines_since_checkpoint = 0
        self.findings = 0
        self.started_at = utc_now()
        self.reloads = 0
        self.last_reload: LastReload | None = None
        self._reload_job: ReloadJob | None = None
        self._rate = RateMeter()
        self._last_status = 0.0
        self._last_upkeep = time.monotonic()
        self._seen_keys: set[str] = set()
        # The last failed write, kept for `irwatchd status`; `degraded` stays true until the
        # same step succeeds again.
        self.last_error: WriteFailure | None = None
        self.degraded = False
        # Set by `run` once the pipeline exists; `_tick` reports on them.
        self._tailer: Tailer | None = None
        self._responder: Responder | None = None
        self._watcher: DirectoryWatcher | None = None

    @property
    def config(self) -> Config:
        """The configuration in use now."""
        return self.settings.loaded.config

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        if number == signal.SIGHUP:
            self.reload_requested = True
        else:
            self.stop_requested = True
        if self.wake is not None:
            self.wake.set()

    def run(self) -> int:
        """Run until SIGTERM or SIGINT; return the exit code."""
        wake = self.wake = Waker()
        # Handlers go first: systemd or `irwatchd reload` may signal as soon as the PID file
        # exists, and an unhandled SIGHUP would end the process.
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(number, self._on_signal)
        lock = _lock_state_dir(self.paths)
        audit = CountingAuditLog(self.paths.audit_log, metrics=self.metrics)
        responder = Responder(self.settings.loaded, self.paths, audit)
        checkpoints = CheckpointStore(self.paths.checkpoints)
        recovered = recover(
            self.paths.audit_log, checkpoints.audit_position, responder.windows, datetime.now(UTC)
        )
        self._seen_keys = recovered.seen_keys
        config = self.config
        tailer = Tailer(
            self.settings.watch_specs, checkpoints,
            start_at=config.start_at, max_line_bytes=config.max_line_bytes,
        )  # fmt: skip
        watcher = DirectoryWatcher(wake, force_polling=self.force_polling,
                                   poll_seconds=min(1.0, config.poll_interval_seconds))  # fmt: skip
        self._tailer, self._responder, self._watcher = tailer, responder, watcher
        try:
            watcher.update(tailer.directories())
            audit.append(action_record("start", "success", details={
                "version": __version__, "pid": os.getpid(),
                "config_path": str(self.settings.loaded.path),
                "watch": [spec.path for spec in self.settings.watch_specs],
            }))  # fmt: skip
            if recovered.after_checkpoint is not None:
                self._refile(responder, audit, recovered.after_checkpoint)
            self._poll(tailer, responder, audit, checkpoints)
            # Also when nothing was read: a file opened at its end must resume from there
            # after a restart, not from its end at that time.
            self._save_checkpoints(tailer, audit, checkpoints)
            self._configure_metrics()
            self._write_status()
            log.info("daemon_started", pid=os.getpid(), state_dir=str(self.paths.root),
                     files=len(tailer.files), rules=len(self.detector.rules),
                     mode=watcher.mode)  # fmt: skip
            if not tailer.files:
                log.warning("no_files_watched", paths=self._watched_paths(),
                            hint=self._no_files_hint())  # fmt: skip
            # Modules, compiled rules and restored state live as long as the process: keep
            # the collector from walking them again on every full collection.
            gc.freeze()
            self.notifier.ready(self._status_line())
            while not self.stop_requested:
                wake.wait(self.notifier.wait_seconds(self.config.poll_interval_seconds))
                wake.clear()
                self._handle_reload(audit)
                watcher.restart_if_dead(tailer.directories())
                watcher.update(tailer.directories())
                self._poll(tailer, responder, audit, checkpoints)
                self._last_upkeep = time.monotonic()
                try:
                    responder.tick()
                except OSError as error:
                    # A full disk must not end the daemon; the next pass tries again, and
                    # the responder keeps the unblock records it could not write.
                    log.error("block_upkeep_failed", error=str(error),
                              hint=write_failure_hint(error, self.paths.root))  # fmt: skip
                    self._note_write_failure("block_upkeep", error, str(self.paths.blocks))
                else:
                    self._note_write_success("block_upkeep")
                self._tick()
            self.notifier.stopping()
            log.info("daemon_stopping", pid=os.getpid())
            self._poll(tailer, responder, audit, checkpoints)
            self._save_checkpoints(tailer, audit, checkpoints)
            audit.append(action_record("stop", "success", details={"pid": os.getpid()}))
        finally:
            _ignore_stop_signals()
            self._shutdown(lock, audit)
        log.info("daemon_stopped", pid=os.getpid(), lines_read=self.lines_read,
                 findings=self.findings)  # fmt: skip
        flush_suppressed()
        return 0

    def _shutdown(self, lock: StateLock, audit: AuditLog) -> None:
        if self._reload_job is not None and not self._reload_job.done():
            log.warning("reload_abandoned", config_path=str(self.config_path),
                        reason="the daemon is stopping")  # fmt: skip
        if self.metrics_server is not None:
            self.metrics_server.stop()
        assert self._watcher is not None and self._responder is not None
        assert self._tailer is not None
        self._watcher.stop()
        self._responder.close()
        audit.close()
        self._write_status(running=False)
        self._tailer.close()
        lock.release()

    def _tick(self) -> None:
        """Ping the watchdog and refresh the status when due; called on every loop pass."""
        self.notifier.watchdog_tick()
        if time.monotonic() - self._last_status >= STATUS_INTERVAL_SECONDS:
            self._write_status()
            self.notifier.status(self._status_line())
            report_suppressed()

    def _poll(
        self,
        tailer: Tailer,
        responder: Responder,
        audit: CountingAuditLog,
        checkpoints: CheckpointStore,
    ) -> None:
        # Each `tailer.poll` reads at most 1 MiB per file, so a burst is processed piece by
        # piece and memory stays bounded. Every read's blocks and records are written at
        # once. When a read leaves many tickets and alert files waiting, they wait until the
        # backlog is read (within the bounds above), so no later block waits for them. The
        # checkpoints move only after those files.
        unsaved = False
        handled = read_bytes = 0
        while True:
            batches = tailer.poll()
            if batches:
                try:
                    with collector_paused():
                        for batch in batches:
                            handled += self._process(batch, responder)
                        responder.flush_records()
                except OSError as error:
                    self._recording_failed(tailer, audit, error)
                    return
                unsaved = True
                read_bytes += sum(batch.size for batch in batches)
                interrupted = self.stop_requested or self.reload_requested
                if (
                    not interrupted
                    and DEFER_FILES_FROM <= responder.pending_files < MAX_PENDING_FILES
                    and read_bytes < CHECKPOINT_EVERY_BYTES
                ):
                    self._tick()
                    continue
            if unsaved:
                try:
                    # Tickets and alert files, then the fsync of every record so far.
                    responder.write_files()
                    audit.sync()
                except OSError as error:
                    self._recording_failed(tailer, audit, error)
                    return
                if handled:
                    self._note_write_success("record_findings")
                responder.forget_handled()
                self._save_checkpoints(tailer, audit, checkpoints)
                self._tick()
                unsaved = False
                handled = read_bytes = 0
            if not batches or self.stop_requested or self.reload_requested:
                return
            if self._upkeep_waits():
                # Lines may still wait, so the loop comes straight back for them.
                assert self.wake is not None, "the loop runs only in `run`, which makes the waker"
                self.wake.set()
                return

    def _upkeep_waits(self) -> bool:
        """Return whether a finished reload or the block upkeep should not wait for the backlog.

        `_poll` leaves only at a checkpoint, so the files a burst defers still wait for its end.
        """
        if self._reload_job is not None and self._reload_job.done():
            return True
        return time.monotonic() - self._last_upkeep >= UPKEEP_EVERY_SECONDS

    def _refile(self, responder: Responder, audit: AuditLog, start: int) -> None:
        """Write the tickets and alert files of findings recorded after the last checkpoint.

        A crash between a backlog's records and its files leaves them unwritten, and the
        findings read again are skipped as recorded, so they are rebuilt from the audit log.
        """
        try:
            # The checkpoint file's last change is when the audit position was saved.
            checkpoint_time = self.paths.checkpoints.stat().st_mtime
        except OSError:
            checkpoint_time = 0.0
        findings = refiled = 0
        for recorded in findings_after(self.paths.audit_log, start):
            findings += 1
            refiled += responder.refile(
                recorded.finding, recorded.moment, recorded.incident_id,
                recorded.recorded_actions, checkpoint_time,
            )  # fmt: skip
        files = responder.pending_files
        try:
            responder.flush()
            audit.sync()
        except OSError as error:
            # The audit log keeps every finding; the files of the incidents rebuilt are lost.
            log.error("refile_failed", path=error.filename or str(audit.path), error=str(error),
                      hint=write_failure_hint(error, self.paths.root))  # fmt: skip
            self._note_write_failure("refile", error, str(error.filename or audit.path))
            return
        log.info("findings_refiled", findings_after_checkpoint=findings, refiled=refiled,
                 files=files)  # fmt: skip

    def _recording_failed(self, tailer: Tailer, audit: CountingAuditLog, error: OSError) -> None:
        """Rewind to the last checkpoints after a failed write, and report the failure."""
        # The lines after the last checkpoint are read again on the next poll. The responder
        # skips the findings it handled since then and keeps their unwritten records queued,
        # so none is recorded twice or lost.
        tailer.rewind()
        self.lines_read -= self._lines_since_checkpoint
        self._lines_since_checkpoint = 0
        path = error.filename or str(audit.path)
        log.error(
            "findings_not_recorded", path=path,
            error=str(error), hint=write_failure_hint(error, self.paths.root),
        )  # fmt: skip
        self._note_write_failure("record_findings", error, str(path))

    def _save_checkpoints(
        self, tailer: Tailer, audit: AuditLog, checkpoints: CheckpointStore
    ) -> None:
        saved = tailer.checkpoints_now()
        self._lines_since_checkpoint = 0
        try:
            audit_file = os.stat(audit.path)
            checkpoints.save(saved, audit_position=(audit_file.st_ino, audit_file.st_size))
        except OSError as error:
            # Safe to go on: the findings are recorded, and a crash before the next save
            # only reads more lines again.
            log.error("checkpoint_write_failed", path=str(checkpoints.path), error=str(error),
                      hint=write_failure_hint(error, self.paths.root))  # fmt: skip
            self._note_write_failure("save_checkpoints", error, str(checkpoints.path))
        else:
            self._note_write_success("save_checkpoints")

    def _note_write_failure(self, operation: str, error: OSError, path: str) -> None:
        """Mark the daemon degraded and publish the error in `status.json` at once."""
        is_new = not self.degraded
        self.degraded = True
        self.last_error = WriteFailure(
            operation, path, error.strerror or str(error), utc_now(),
            write_failure_hint(error, self.paths.root),
        )  # fmt: skip
        if is_new and self._tailer is not None:
            self._write_status()

    def _note_write_success(self, operation: str) -> None:
        """Clear the degraded mark once the step that failed last has succeeded."""
        if not self.degraded or self.last_error is None:
            return
        if self.last_error.operation != operation:
            return
        self.degraded = False
        log.info("write_recovered", operation=operation, path=self.last_error.path,
                 failed_at=self.last_error.time)  # fmt: skip
        if self._tailer is not None:
            self._write_status()

    def _process(self, batch: LineBatch, responder: Responder) -> int:
        """Detect in one batch and hand each new finding on; return how many."""
        followed = batch.file
        now = datetime.now(UTC)
        self.lines_read += batch.count
        self._lines_since_checkpoint += batch.count
        if batch.block is not None:
            # Prefilter the raw bytes and parse only the lines a rule may match. A block
            # never has a cut line, so there is no truncation to report.
            block = batch.block
            findings = detect_lines_block(
                self.detector, block.data, followed.source_type, followed.path,
                followed.max_line_bytes, now,
                lines_before=block.number or 0, offset_before=block.offset,
            )  # fmt: skip
            # A file opened at its end has unknown line numbers, because its blocks count
            # lines from where reading started.
            line_numbers_known = block.number is not None
        else:
            line_numbers_known = True
            findings = self.detector.detect(self._parse(batch, now))
        handled = 0
        for finding in self.process_context.attribute(findings):
            key = dedup_key(finding)
            if key in self._seen_keys:
                # Recorded before a crash; `recover` counted its windows again at start.
                continue
            recorded = responder.handle(finding, key=key, line_number_known=line_numbers_known)
            if not recorded:
                continue  # read again after a failed write; its records are still queued
            self.findings += recorded  # with the brute force it completed, as the audit log
            handled += 1
            if responder.pending_records >= FLUSH_EVERY_PENDING:
                responder.flush_records()
        return handled

    @staticmethod
    def _parse(batch: LineBatch, now: datetime) -> list[LogRecord]:
        """Parse every line of a batch of `RawLine`s, reporting the lines cut at the cap."""
        followed = batch.file
        records = []
        for line in batch.lines:
            if line.truncated_bytes:
                log.warning(
                    "line_truncated", path=followed.path, offset=line.offset,
                    kept_bytes=len(line.text.encode()), skipped_bytes=line.truncated_bytes,
                )  # fmt: skip
            records.append(parse_line(
                line.text, followed.source_type, now, path=followed.path,
                line_number=line.number, offset=line.offset, raw_sha256=line.invalid_utf8_sha256,
            ))  # fmt: skip
        return records

    def _handle_reload(self, audit: AuditLog) -> None:
        """Start a reload on SIGHUP, and swap the configuration in once it is validated.

        A SIGHUP that arrives while a reload is validating waits for it and then starts
        another, so the last signal always reads the last edit.
        """
        job = self._reload_job
        if job is not None and job.done():
            self._reload_job = None
            if job.result is not None:
                self._apply_reload(job.result, audit, job.elapsed())
            else:
                self._reject_reload(job.error or "unknown error", audit)
        if self.reload_requested and self._reload_job is None:
            self.reload_requested = False
            self.notifier.reloading()
            log.info("reload_started", config_path=str(self.config_path), pid=os.getpid())
            assert self.wake is not None, "a reload starts only in `run`, which makes the waker"
            self._reload_job = ReloadJob(
                self.config_path, self.state_dir_option, self.watch_option, self.wake
            )
            self._write_status()

    def _reject_reload(self, error: str, audit: AuditLog) -> None:
        log.error(
            "reload_failed", config_path=str(self.config_path), error=error,
            hint="fix the config and reload again; the running config stays in use",
        )  # fmt: skip
        audit.append(action_record("reload", "failure", details={
            "config_path": str(self.config_path), "error": error,
        }))  # fmt: skip
        self._finish_reload(LastReload(utc_now(), "failure", str(self.config_path), error=error))

    def _apply_reload(
        self, validated: ValidatedConfiguration, audit: AuditLog, elapsed: float
    ) -> None:
        assert self._tailer is not None and self._responder is not None
        assert self._watcher is not None
        settings = validated.settings
        tailer, responder = self._tailer, self._responder
        restart_required = []
        if settings.state_dir != self.paths.root:
            # The lock, the audit log and every state file are open in the old directory.
            restart_required.append("state_dir")
            log.warning(
                "reload_setting_needs_restart", setting="state_dir",
                running=str(self.paths.root), configured=str(settings.state_dir),
            )  # fmt: skip
        windows = responder.windows
        self.settings = settings
        self.detector = validated.detector
        # NOTE: an error raised here, after validation passed (a firewall back-end that cannot
        # be built, say), ends the daemon with exit 70 and systemd restarts it on the new config.
        responder.apply_config(settings.loaded)
        if windows.specs == responder.windows.specs:
            # NOTE: windows only survive a reload that leaves `correlation` unchanged; a
            # changed list starts counting from zero.
            responder.windows = windows
        tailer.set_specs(settings.watch_specs)
        tailer.max_line_bytes = self.config.max_line_bytes
        self._watcher.update(tailer.directories())
        self._configure_metrics()
        rules = len(validated.detector.rules)
        audit.append(action_record("reload", "success", details={
            "config_path": str(settings.loaded.path), "rules": rules,
            "restart_required": restart_required,
        }))  # fmt: skip
        log.info("reload_finished", config_path=str(settings.loaded.path), rules=rules,
                 seconds=round(elapsed, 3), restart_required=restart_required)  # fmt: skip
        self._finish_reload(
            LastReload(utc_now(), "success", str(settings.loaded.path), rules=rules,
                       restart_required=tuple(restart_required))
        )  # fmt: skip

    def _finish_reload(self, outcome: LastReload) -> None:
        self.reloads += 1
        self.last_reload = outcome
        # Written at once, so `irwatchd reload` reads the outcome without waiting for a tick.
        self._write_status()
        self.notifier.ready(self._status_line())

    def _configure_metrics(self) -> None:
        """Start, stop or move the metrics endpoint to match the configuration."""
        configured = self.config.metrics
        server = self.metrics_server
        if server is not None and (not configured.enabled or server.listen != configured.listen):
            server.stop()
            self.metrics_server = None
        self.metrics_error = None
        if configured.enabled and self.metrics_server is None:
            try:
                self.metrics_server = MetricsServer(self.metrics, configured.listen)
            except OSError as error:
                # Detection matters more than metrics: report the failure and go on.
                self.metrics_error = str(error)
                log.error("metrics_listen_failed", listen=configured.listen, error=str(error),
                          hint="free the port or change metrics.listen, then reload")  # fmt: skip

    def _status_line(self) -> str:
        assert self._tailer is not None and self._responder is not None
        responder = self._responder
        return status_line(
            len(self._tailer.files), self._rate.rate,
            len(responder.incidents), len(responder.blocks.active()),
        )  # fmt: skip

    def _write_status(self, *, running: bool = True) -> None:
        """Write `status.json` and publish the same numbers to the metrics."""
        assert self._tailer is not None and self._responder is not None
        assert self._watcher is not None
        self._last_status = time.monotonic()
        tailer, responder = self._tailer, self._responder
        metrics = self.config.metrics
        document = {
            "running": running,
            "pid": os.getpid(),
            "version": __version__,
            "started_at": self.started_at,
            "updated_at": utc_now(),
            "config_path": _path_or_none(self.settings.loaded.path),
            "state_dir": str(self.paths.root),
            "watch_override": self.watch_option,
            "watch_mode": self._watcher.mode,
            "lines_read": self.lines_read,
            "lines_per_second": round(self._rate.sample(self.lines_read), 3),
            "findings": self.findings,
            "open_incidents": len(responder.incidents),
            "active_blocks": len(responder.blocks.active()),
            "blocking": responder.blocking_health(),
            "queues": queue_depths(tailer, responder),
            "files": file_rows(tailer),
            "reloads": self.reloads,
            "reloading": self._reload_job is not None or self.reload_requested,
            "last_reload": self.last_reload.to_json() if self.last_reload else None,
            "metrics": {
                "enabled": metrics.enabled,
                "listen": self.metrics_server.listen if self.metrics_server else None,
                "error": self.metrics_error,
            },
            "degraded": self.degraded,
            "last_error": self.last_error.to_json() if self.last_error else None,
            "warnings": self._warnings(),
        }
        self.metrics.publish(document)
        try:
            write_json_atomic(self.paths.root / STATUS_FILE, document)
        except OSError as error:
            log.warning("status_write_failed", path=str(self.paths.root / STATUS_FILE),
                        error=str(error))  # fmt: skip

    def _watched_paths(self) -> list[str]:
        return [spec.path for spec in self.settings.watch_specs]

    def _no_files_hint(self) -> str:
        if self.watch_option:
            fix = "fix the --watch paths"
        else:
            fix = f"fix the paths under `sources` in {self.settings.loaded.path or 'the config'}"
        return (
            f"create the log files, {fix}, or pass --watch PATH:TYPE; the daemon starts "
            "reading matching files as they appear"
        )

    def _warnings(self) -> list[str]:
        """Return the problems `irwatchd status` should show while the daemon runs."""
        assert self._tailer is not None
        warnings = []
        unreadable = self._tailer.unreadable()
        if unreadable:
            warnings.append(f"cannot read {', '.join(unreadable)}: {UNREADABLE_HINT}")
        elif not self._tailer.files:
            paths = ", ".join(self._watched_paths())
            warnings.append(f"no file matches {paths}; {self._no_files_hint()}")
        return warnings


def _ignore_stop_signals() -> None:
    """Ignore SIGTERM, SIGINT and SIGHUP for the rest of the process's life.

    The daemon is stopping already, so another signal has nothing left to do. Python's
    finalization resets handlers written in Python to the default action, which would let a
    SIGTERM sent during the exit end the process with status 143; SIG_IGN stays in place.
    """
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)


def _path_or_none(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _lock_state_dir(paths: StatePaths) -> StateLock:
    """Create the state directory's layout and take its lock, mapping errors to exit codes."""
    try:
        paths.create()
        lock = StateLock(paths.root)
        lock.acquire()
    except PermissionError as error:
        raise NoPermissionError(
            f"cannot create or lock the state directory {str(paths.root)!r}: {error.strerror} "
            f"({error.filename}); run as a user that may write there, or pass --state-dir"
        ) from None
    except (FileExistsError, NotADirectoryError) as error:
        raise CantCreateError(
            f"cannot create the state directory {str(paths.root)!r}: {error.filename!r} is a "
            "file, not a directory; point state_dir at a directory, or pass --state-dir"
        ) from None
    except OSError as error:
        raise CantCreateError(
            f"cannot create the state directory {str(paths.root)!r}: {error.strerror} "
            f"({error.filename}); fix the path or pass --state-dir"
        ) from None
    return lock
