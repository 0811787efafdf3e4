"""Route each finding through correlation, incidents and the severity policy, auditing each step.

Actions run once per incident (a block, an alert, a forensic copy) or update it (the ticket),
so a thousand lines of one attack make one block, one ticket and a handful of alerts, not a
thousand of each.

`handle` decides; `flush`, which the caller runs at the end of each batch of lines, acts:

1. it applies every pending block with one back-end call and one save of `blocks.json`,
2. it appends the batch's audit records in the order `handle` made them (each finding, then
   its block, forensics and incident-close records) with one write,
3. it writes the alert files, fsyncs their folder once, queues them for the channels, and
   appends their records,
4. it writes the tickets, fsyncs their folder once, and appends their records.

The daemon runs steps 1 and 2 (`flush_records`) for each read and steps 3 and 4
(`write_files`) once a backlog is read. So a block record is written only after its block
is applied, and a batch costs a few fsyncs instead of several per finding. Tickets and
alert files are derived state, so they are not fsynced one by one. The audit log, which the
caller fsyncs, is the record of what was done.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from irwatchd.audit.log import AuditLog
from irwatchd.audit.records import action_record, finding_record
from irwatchd.config import Blocking, LoadedConfig
from irwatchd.config_paths import default_config_path
from irwatchd.correlation.incidents import Incident, IncidentTracker, IncidentUpdate
from irwatchd.correlation.windows import SlidingWindows
from irwatchd.detection.finding import SEVERITIES, Finding
from irwatchd.errors import ConfigError, Problem
from irwatchd.jsonfiles import fsync_directory
from irwatchd.logger import get_logger
from irwatchd.parsing.timestamps import format_rfc3339
from irwatchd.response.alerts import alert_document, alert_reason, write_alert_file
from irwatchd.response.allowlist import Allowlist
from irwatchd.response.backends import (
    BackendError,
    NftablesBackend,
    backend_problems,
    build_backend,
)
from irwatchd.response.blocking import BlockRequest, BlockResult, BlockStore, parse_blockable
from irwatchd.response.delivery import AlertDispatcher
from irwatchd.response.forensics import save_evidence
from irwatchd.response.tickets import TicketStore
from irwatchd.state_dir import locate_state_dir

log = get_logger(__name__)

BACKEND_FIELDS = (
    "backend",
    "nft_path",
    "nft_table",
    "nft_priority",
    "command",
    "unblock_command",
    "timeout_seconds",
)
"""Blocking settings whose change on reload needs a new back-end."""

TICKET_WRITE_INTERVAL_SECONDS = 1.0
"""Minimum time between two rewrites of one ticket; each rewrite costs two fsyncs."""

FLUSH_EVERY_PENDING = 3000
"""Pending audit records and actions after which the daemon and `scan` flush in mid-batch.

This bounds the memory a large read holds until its flush (a 1 MiB read of sshd failures
makes about 10,000 records) without giving up the batching of blocks and fsyncs.
"""

MAX_PENDING_FILES = 20_000
"""Ticket and alert file writes the daemon holds back while it reads a backlog.

Past it, the daemon writes them and saves its checkpoints before it reads on. This bounds
the memory they hold (about 1 KiB each by the peak RSS of `bench/burst.py`) and the
lines a crash reads again.
"""

MAX_RETRIED_BLOCKS = 5_000
"""Failed blocks the daemon keeps to try again; past it, the oldest is dropped and logged."""

MAX_CLOCK_SKEW = timedelta(hours=1)
"""A log time further than this from the clock is not trusted for windows; arrival time is."""

BLOCK_AUDITED = "block_audited"
"""The `actions_done` marker of an incident whose successful block has its audit record."""


@dataclass(slots=True)
class _PendingBlock:
    """A block `handle` asked for; `slot` is where its record goes among the pending records."""

    finding: Finding
    incident: Incident
    slot: int


@dataclass(slots=True)
class _PendingTicket:
    """A ticket write `handle` asked for, with the first finding that asked in this batch."""

    incident: Incident
    finding: Finding | None
    is_new: bool


@dataclass(slots=True)
class _PendingAlert:
    """An alert `handle` decided on. Its document is built when the file is written, so it
    shows the incident as it is then, and a burst's alerts take no time before its blocks."""

    finding: Finding
    incident: Incident
    reason: str


@dataclass(frozen=True, slots=True)
class StatePaths:
    """Paths of each kind of state under the state directory."""

    root: Path
    audit_log: Path = field(init=False)
    alerts: Path = field(init=False)
    tickets: Path = field(init=False)
    forensics: Path = field(init=False)
    reports: Path = field(init=False)
    blocks: Path = field(init=False)
    checkpoints: Path = field(init=False)

    def __post_init__(self) -> None:
        set_field = object.__setattr__
        set_field(self, "audit_log", self.root / "audit.jsonl")
        set_field(self, "alerts", self.root / "alerts")
        set_field(self, "tickets", self.root / "alerts" / "tickets")
        set_field(self, "forensics", self.root / "forensics")
        set_field(self, "reports", self.root / "reports")
        set_field(self, "blocks", self.root / "blocks.json")
        set_field(self, "checkpoints", self.root / "checkpoints.json")

    def create(self) -> None:
        """Create every folder of the layout."""
        for folder in (self.root, self.alerts, self.tickets, self.forensics, self.reports):
            folder.mkdir(parents=True, exist_ok=True)


def dedup_key(finding: Finding) -> str:
    """Identify a finding by where its line is and which rule fired, so a re-read line matches."""
    record = finding.record
    key = f"{record.path}|{record.offset}|{finding.rule_id}|{record.raw}"
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:32]


class Responder:
    """Owns correlation, incident and block state and runs the policy for the daemon's lifetime.

    With `live=False` (the offline `scan`) no alert channel thread starts, blocks are only
    recorded, and log times are trusted as they are.
    """

    def __init__(
        self,
        loaded: LoadedConfig,
        paths: StatePaths,
        audit: AuditLog,
        *,
        live: bool = True,
        blocks_path: Path | None = None,
    ) -> None:
        """Load the state under `paths`; `blocks_path` replaces `paths.blocks` when given."""
        self.paths = paths
        self.audit = audit
        self.live = live
        config = loaded.config
        self._blocking: Blocking = config.blocking
        if live:
            # Stop at start with exit 78 rather than fail at the first attack.
            _check_backend(loaded)
        self.blocks = BlockStore(
            blocks_path or paths.blocks,
            build_backend(config.blocking),
            Allowlist(config.blocking.allowlist),
            config.blocking,
            recover_damaged=True,
        )
        self.tickets = TicketStore(paths.tickets)
        self.incidents = IncidentTracker(max_evidence=config.tickets.max_evidence_lines)
        self.incidents.restore(self.tickets.load_all())
        self.dispatcher = AlertDispatcher(paths.alerts)
        self.counts: dict[str, int] = {}
        # What `handle` decided and `flush` carries out; a None record is the slot of a
        # pending block's record.
        self._records: list[dict[str, Any] | None] = []
        # Expired blocks lifted whose unblock records are not written yet.
        self._unrecorded_unblocks: list[str] = []
        # Keys of the findings handled since the daemon last saved its checkpoints.
        self._handled_keys: set[str] = set()
        self._pending_blocks: list[_PendingBlock] = []
        # Blocks the back-end failed to apply, by address, tried again every
        # `blocking.retry_seconds` until one succeeds, so a source that stops after a failed
        # block is still blocked once the firewall works again.
        self._failed_blocks: dict[str, _PendingBlock] = {}
        self._retried_at = time.monotonic()
        self._pending_tickets: dict[str, _PendingTicket] = {}
        self._pending_alerts: list[_PendingAlert] = []
        # Tickets and alerts of the records `flush_records` wrote, waiting for `write_files`.
        # A failed record write drops the pending ones instead, as their findings are
        # handled again.
        self._ready_tickets: dict[str, _PendingTicket] = {}
        self._ready_alerts: list[_PendingAlert] = []
        self._dirty_tickets: dict[str, Incident] = {}
        self._ticket_written: dict[str, float] = {}
        # Incidents whose ticket status was read from disk since the last flush.
        self._status_checked: set[str] = set()
        # Incidents that `refile` rebuilt at start.
        self._refiled: set[str] = set()
        self.on_close: Callable[[Incident, str], None] | None = None
        """Called with each incident the tracker closes and the reason; a scan lists them."""
        self._configured = False
        self.apply_config(loaded)
        if live:
            self._restore_blocks()

    def _restore_blocks(self) -> None:
        backend = self.blocks.backend
        if isinstance(backend, NftablesBackend):
            # Fail loudly at start (no nft, no permission) rather than at the first attack.
            try:
                backend.ensure_table()
            except BackendError as error:
                self.blocks.last_error = str(error)
                log.error("block_backend_unavailable", backend=backend.name, error=str(error))
                self.audit.append(
                    action_record("block_backend", "failure", details={"error": str(error)})
                )
        restored = self.blocks.restore()
        if self.blocks.backend.name == "simulate":
            # Marks the saved blocks as applied, so `tick` does not audit them again as
            # blocks added by `irwatchd blocks` after a restart.
            return
        self.audit.append(
            action_record(
                "block_restore",
                "success",
                details={
                    "backend": self.blocks.backend.name,
                    "addresses": restored,
                },
            )
        )
        log.info("blocks_restored", backend=self.blocks.backend.name, count=len(restored))

    def apply_config(self, loaded: LoadedConfig) -> None:
        """Take the policy, windows and action settings of a (re)loaded config."""
        config = loaded.config
        self.config = config
        # Looked up for every finding, so built once per config rather than per finding.
        self._actions = {
            severity: frozenset(config.policy.actions_for(severity)) for severity in SEVERITIES
        }
        self.windows = SlidingWindows(config.correlation)
        self.blocks.allowlist = Allowlist(config.blocking.allowlist)
        self.blocks.settings = config.blocking
        if any(
            getattr(config.blocking, name) != getattr(self._blocking, name)
            for name in BACKEND_FIELDS
        ):
            # NOTE: blocks applied through the old back-end stay there until they expire.
            self.blocks.backend = build_backend(config.blocking)
            self.blocks.last_error = None
            for key, message in backend_problems(config.blocking):
                # A reload keeps running: the back-end reports unhealthy until fixed.
                self.blocks.last_error = f"{key}: {message}"
                log.error("block_backend_unavailable", key=key, error=message)
            self._blocking = config.blocking
            if self.live:
                self._restore_blocks()
        self.incidents.max_evidence = config.tickets.max_evidence_lines
        self.audit.configure_rotation(config.audit.max_bytes, config.audit.keep_files)
        if self.live:
            # Strict at start, so a missing secret stops the daemon with exit code 78.
            self.dispatcher.apply(config.alerts, strict=not self._configured)
        self._configured = True

    def tick(self) -> None:
        """Lift expired blocks and apply changes made by `irwatchd blocks`; called on every poll."""
        self._unrecorded_unblocks += self.blocks.expire()
        self._record_unblocks()
        if self.live:
            self._apply_cli_block_changes()
            self._retry_failed_blocks()
        self._queue_due_tickets()
        self.flush()
        self.audit.sync()

    def _record_unblocks(self) -> None:
        """Audit the expired blocks, one record each; keep the rest when a write fails.

        A block is lifted before its record is written, so a record that fails (a full
        disk) is written by a later tick, and none is written twice.
        """
        while self._unrecorded_unblocks:
            address = self._unrecorded_unblocks[0]
            self.audit.append(
                action_record(
                    "unblock",
                    "success",
                    source_ip=address,
                    details={"reason": "expired", "backend": self.blocks.backend.name},
                )
            )
            self._unrecorded_unblocks.pop(0)
            log.info("block_expired", address=address)

    def _apply_cli_block_changes(self) -> None:
        added, removed = self.blocks.sync()
        for address in added:
            self.audit.append(
                action_record(
                    "block",
                    "success",
                    source_ip=address,
                    details={
                        "reason": "added by irwatchd blocks",
                        "applied_by": "daemon",
                        "step": "applied",
                    },
                )
            )
        for address in removed:
            self.audit.append(
                action_record(
                    "unblock",
                    "success",
                    source_ip=address,
                    details={
                        "reason": "removed by irwatchd blocks",
                        "applied_by": "daemon",
                        "step": "applied",
                    },
                )
            )

    def blocking_health(self) -> dict[str, object]:
        """Return the blocking back-end's health for status.json.

        `healthy` is false from a failed back-end run (or a reloaded back-end whose program
        is missing) until the next successful one.
        """
        return {
            "backend": self.blocks.backend.name,
            "healthy": self.blocks.last_error is None,
            "last_error": self.blocks.last_error,
        }

    def queue_depths(self) -> dict[str, int]:
        """Return the number of alerts waiting on disk per channel, as `alerts_<channel>`."""
        return {
            f"alerts_{name}": counts["pending"] for name, counts in self.dispatcher.status().items()
        }

    def close(self) -> None:
        """Carry out pending actions and ticket updates, then stop the alert threads.

        Alerts queued for a channel stay on disk.
        """
        self._queue_due_tickets(force=True)
        self.flush()
        self.dispatcher.close()

    @property
    def pending(self) -> int:
        """The number of audit records and actions waiting for `flush`."""
        return len(self._records) + len(self._pending_tickets) + len(self._pending_alerts)

    @property
    def pending_records(self) -> int:
        """The number of audit records (and block slots) waiting for `flush_records`."""
        return len(self._records)

    @property
    def pending_files(self) -> int:
        """The number of ticket and alert file writes waiting for `flush` or `write_files`."""
        return (
            len(self._pending_tickets)
            + len(self._pending_alerts)
            + len(self._ready_tickets)
            + len(self._ready_alerts)
        )

    def flush(self) -> None:
        """Carry out the actions `handle` decided since the last flush, in the module's order.

        Raises the first OSError of a write. The actions of this flush not done by then are
        dropped, except the tickets and alert files that other writes did not stop.
        """
        with collector_paused():
            self._flush_records()
            self._write_files()

    def flush_records(self) -> None:
        """Apply the pending blocks and append the pending records; keep tickets and alerts.

        The daemon calls this for each read of a backlog, so the blocks of later reads do
        not wait for the ticket and alert files of earlier ones. A ticket queued again before
        `write_files` is written once, with its latest state.
        """
        with collector_paused():
            self._flush_records()

    def write_files(self) -> None:
        """Write the tickets and alert files of the records written so far; audit each one.

        Raises the first OSError, after writing and auditing the files that did not fail.
        """
        with collector_paused():
            self._write_files()

    def _flush_records(self) -> None:
        self._status_checked.clear()
        records, self._records = self._records, []
        blocks, self._pending_blocks = self._pending_blocks, []
        tickets, self._pending_tickets = self._pending_tickets, {}
        alerts, self._pending_alerts = self._pending_alerts, []
        audited: dict[str, Incident] | None = None
        try:
            audited = self._apply_blocks(blocks, records) if blocks else {}
            self.audit.append_many([record for record in records if record is not None])
        except OSError:
            self._keep_unwritten(records, blocks if audited is None else [])
            raise
        finally:
            # The files stay queued even when the audit write fails. Their incidents stay in
            # memory, so a finding whose record failed is read again and only updates its
            # incident: its incident's first ticket and alert would never be queued again.
            for incident_id, pending in tickets.items():
                ready = self._ready_tickets.setdefault(incident_id, pending)
                ready.is_new = ready.is_new or pending.is_new
            self._ready_alerts += alerts
        for incident in audited.values():
            incident.actions_done.add(BLOCK_AUDITED)

    def _keep_unwritten(
        self, records: list[dict[str, Any] | None], blocks: list[_PendingBlock]
    ) -> None:
        """Queue again what a failed flush did not write, for the next flush to write.

        The daemon reads the lines again after a failed write, and `handle` skips the
        findings it handled since the last checkpoint. So their records, the records of the
        findings they completed (such as a brute force) and their blocks must stay queued.
        With `blocks`, the blocks were not applied and everything stays as it was queued.
        """
        if blocks:
            self._records = records + self._records
            self._pending_blocks = blocks + self._pending_blocks
            return
        queued: list[dict[str, Any] | None] = [record for record in records if record is not None]
        self._records = queued[self.audit.written_count :] + self._records

    def _write_files(self) -> None:
        # Alerts go first, so a ticket on disk means its incident's alerts are recorded, and
        # `refile` can skip the incidents that tickets brought back.
        tickets, self._ready_tickets = self._ready_tickets, {}
        alerts, self._ready_alerts = self._ready_alerts, []
        alert_error = self._write_alerts(alerts)
        ticket_error = self._write_tickets(list(tickets.values()))
        for error in (alert_error, ticket_error):
            if error is not None:
                raise error

    def _moment(self, finding: Finding) -> datetime:
        now = datetime.now(UTC)
        logged = finding.record.time
        if not self.live and logged is not None:
            return logged
        if logged is not None and abs(logged - now) <= MAX_CLOCK_SKEW:
            return logged
        return now

    def handle(
        self, finding: Finding, *, key: str | None = None, line_number_known: bool = True
    ) -> int:
        """Queue a finding's audit record and actions, and those of the findings it completes.

        The actions are the ones its incident's severity calls for. `flush` carries them out.
        `key` is the finding's `dedup_key` when the caller has it already. With
        `line_number_known` false, the records give no line number (the daemon opened the
        file at its end, so it counted lines from there).

        Returns how many findings were recorded: this one and those it completed (a brute
        force), or 0 for a finding handled before under the same key since
        `forget_handled`, which is skipped.
        """
        if key is not None and key in self._handled_keys:
            # Read again after a failed audit write. Its records and actions, and those of the
            # findings it completed, are still queued (`_keep_unwritten`). Handling it again
            # would count it twice and turn one failure, read on each retry, into brute force.
            return 0
        moment = self._moment(finding)
        if key is not None:
            self._handled_keys.add(key)
        self._respond(finding, moment, key, line_number_known)
        recorded = 1
        for correlated in self.windows.observe(finding, moment):
            self._respond(correlated, moment, None, line_number_known, grew_from=finding)
            recorded += 1
        return recorded

    def forget_handled(self) -> None:
        """Forget the findings handled so far; the daemon calls this once all are recorded."""
        self._handled_keys.clear()

    def refile(
        self,
        finding: Finding,
        moment: datetime,
        incident_id: str,
        recorded_actions: frozenset[str],
        checkpoint_time: float,
    ) -> bool:
        """Rebuild the incident of a finding recorded before a crash; queue its missing files.

        Only an incident that no ticket brought back at start is rebuilt, under its recorded
        id. Its ticket and alert are queued as `handle` would queue them, unless
        `recorded_actions` (the actions audited for it since the last checkpoint) has them.
        A block applied for it after `checkpoint_time` (Unix time) without a record gets its
        record, marked `recorded_late`. An incident that a ticket brought back only gets its
        ticket written again when the ticket has no record. Nothing else is recorded or
        applied again: the finding records are in the audit log, and `recover` counted the
        windows. Returns whether the finding was refiled.
        """
        current = self.incidents.get((finding.category, finding.source_ip, finding.record.host))
        if current is not None and current.id not in self._refiled:
            if current.id == incident_id and "ticket" not in recorded_actions:
                # The crash came after this ticket's file (and so its alerts) but before its
                # record: write it again for the record, without counting the finding twice.
                self._queue_ticket(current, finding)
            return False
        update = self.incidents.add(finding, moment)
        incident = update.incident
        if update.is_new:
            incident.id = incident_id
            self._refiled.add(incident_id)
        if "block" in recorded_actions:
            incident.actions_done.add(BLOCK_AUDITED)
        self._close_tickets()
        actions = self._actions[incident.severity]
        if "alert" in actions and "alert" not in recorded_actions:
            self._alert(finding, update, moment)
        if "ticket" in actions and "ticket" not in recorded_actions:
            self._queue_ticket(incident, finding, is_new=update.is_new)
        if "block" in actions and "block" not in recorded_actions:
            self._refile_block(finding, incident, checkpoint_time)
        return True

    def _refile_block(self, finding: Finding, incident: Incident, since: float) -> None:
        """Queue the record of a block that a crash cut off, when the block is still active.

        A kill can cut the audit write after a finding's record but before its block's, and
        the finding is then skipped when read again. `_block_record` writes one record per
        incident however often this queues it.
        """
        if incident.source_ip is None:
            return
        try:
            address = str(parse_blockable(incident.source_ip))
        except ValueError:
            return
        entry = self.blocks.active_entry(address)
        if entry is None or entry.get("incident_id") != incident.id:
            return
        if float(entry.get("blocked_at", 0.0)) >= since:
            self._block(finding, incident)

    def _adopt_ticket_status(self, finding: Finding) -> None:
        """Take an ack or close that `irwatchd incidents` wrote into the open incident's ticket.

        The ticket is checked once per incident between two flushes, so a flood from one
        source costs one `stat` per poll, not one per finding. A change the CLI makes later
        in the poll is taken at the next poll, and a ticket rewrite keeps it meanwhile.
        """
        incident = self.incidents.get((finding.category, finding.source_ip, finding.record.host))
        if incident is None or incident.id in self._status_checked:
            return
        self._status_checked.add(incident.id)
        status = self.tickets.status_changed_on_disk(incident)
        if status == "closed":
            self.incidents.close(incident.key)
            log.info("incident_closed_by_ticket", incident_id=incident.id)
        elif status is not None:
            incident.status = status

    def _respond(
        self,
        finding: Finding,
        moment: datetime,
        key: str | None,
        line_number_known: bool,
        *,
        grew_from: Finding | None = None,
    ) -> None:
        """Queue the records and actions of one finding; `grew_from` completed a correlation."""
        self._adopt_ticket_status(finding)
        update = self.incidents.add(finding, moment)
        incident = update.incident
        if grew_from is not None and update.is_new:
            # The new correlated incident also shows the lines that led up to it.
            earlier = self.incidents.get(
                (grew_from.category, grew_from.source_ip, grew_from.record.host)
            )
            if earlier is not None:
                self.incidents.copy_evidence(incident, earlier, finding.count)
        self._records.append(
            finding_record(
                finding,
                dedup_key(finding) if key is None else key,
                incident.id,
                line_number_known=line_number_known,
            )
        )
        self.counts[finding.category] = self.counts.get(finding.category, 0) + 1
        self._close_tickets()
        actions = self._actions[incident.severity]
        if "alert" in actions:
            self._alert(finding, update, moment)
        if "block" in actions and incident.source_ip is not None:
            self._block(finding, incident)
        if "forensics" in actions and (update.is_new or update.escalated):
            self._forensics(finding, incident)
        if "ticket" in actions:
            self._ticket(finding, incident, update)

    def _close_tickets(self) -> None:
        while self.incidents.just_closed:
            incident, reason = self.incidents.just_closed.popleft()
            if self.on_close is not None:
                self.on_close(incident, reason)
            self._dirty_tickets.pop(incident.id, None)
            self._ticket_written.pop(incident.id, None)
            # A ticket still pending is written by the next flush, with the closed status.
            pending = incident.id in self._pending_tickets or incident.id in self._ready_tickets
            if (
                not pending
                and self.tickets.may_exist(incident.id)
                and self.tickets.path_for(incident.id).exists()
            ):
                self.tickets.write(incident)
            self._records.append(
                action_record(
                    "incident_close",
                    "success",
                    incident_id=incident.id,
                    source_ip=incident.source_ip,
                    details={"reason": reason},
                )
            )

    def _ticket(self, finding: Finding, incident: Incident, update: IncidentUpdate) -> None:
        """Queue the ticket when it is new or escalated; others wait for `tick` or `close`."""
        last = self._ticket_written.get(incident.id)
        recent = last is not None and time.monotonic() - last < TICKET_WRITE_INTERVAL_SECONDS
        if self.live and recent and not (update.is_new or update.escalated):
            self._dirty_tickets[incident.id] = incident
            return
        self._queue_ticket(incident, finding, is_new=update.is_new)

    def _queue_ticket(
        self, incident: Incident, finding: Finding | None = None, *, is_new: bool = False
    ) -> None:
        self._dirty_tickets.pop(incident.id, None)
        queued = self._pending_tickets.get(incident.id)
        if queued is None:
            self._pending_tickets[incident.id] = _PendingTicket(incident, finding, is_new)
        else:
            queued.is_new = queued.is_new or is_new

    def _queue_due_tickets(self, *, force: bool = False) -> None:
        """Queue tickets whose updates waited for the interval (all of them when `force`)."""
        now = time.monotonic()
        for incident in list(self._dirty_tickets.values()):
            last = self._ticket_written.get(incident.id, 0.0)
            if force or now - last >= TICKET_WRITE_INTERVAL_SECONDS:
                self._queue_ticket(incident)

    def _write_tickets(self, tickets: list[_PendingTicket]) -> OSError | None:
        """Write the tickets and fsync their folder once; audit each one written.

        Returns the first write error, after writing and auditing the other tickets.
        """
        if not tickets:
            return None
        written, error = self.tickets.write_many([pending.incident for pending in tickets])
        for pending in tickets:
            if pending.incident.id not in written:
                # Tried again by the next `write_files`, unless a newer copy is queued.
                self._ready_tickets.setdefault(pending.incident.id, pending)
        records = []
        for pending in tickets:
            path = written.get(pending.incident.id)
            if path is not None:
                records.append(self._ticket_record(pending, path))
        self.audit.append_many(records)
        return error

    def _ticket_record(self, pending: _PendingTicket, path: Path) -> dict[str, Any]:
        incident = pending.incident
        self._ticket_written[incident.id] = time.monotonic()
        if incident.status == "closed" and self.incidents.get(incident.key) is incident:
            # The CLI closed the ticket just before this write, which kept that status.
            self.incidents.close(incident.key)
        return action_record(
            "ticket",
            "success",
            finding=pending.finding,
            incident_id=incident.id,
            source_ip=incident.source_ip,
            details={
                "ticket_path": str(path),
                "count": incident.count,
                "status": incident.status,
                "is_new": pending.is_new,
                "previous_id": incident.previous_id,
            },
        )

    def _alert(self, finding: Finding, update: IncidentUpdate, moment: datetime) -> None:
        incident = update.incident
        now = datetime.now(UTC)
        reason = alert_reason(update, now, timedelta(minutes=self.config.alerts.reminder_minutes))
        if reason is None:
            return
        incident.last_alert_at = now
        self._pending_alerts.append(_PendingAlert(finding, incident, reason))

    def _write_alerts(self, alerts: list[_PendingAlert]) -> OSError | None:
        """Write the alert files, fsync their folder once, queue them and audit each one.

        Returns the first write error, after writing, queueing and auditing the others.
        """
        first_error: OSError | None = None
        written: list[tuple[_PendingAlert, dict[str, Any], Path]] = []
        failed: list[_PendingAlert] = []
        for pending in alerts:
            alert = alert_document(pending.finding, pending.incident, pending.reason)
            try:
                written.append((pending, alert, write_alert_file(self.paths.alerts, alert)))
            except OSError as error:
                first_error = first_error or error
                failed.append(pending)
                # Without the alert id, which is new on each try, so the repeats of one
                # alert's failure are rate-limited as one event.
                log.error("alert_write_failed", incident_id=pending.incident.id,
                          reason=pending.reason, error=str(error),
                          hint="the alert is written again with the next files")  # fmt: skip
        # Tried again by the next `write_files`, such as after a full disk has space again.
        self._ready_alerts = failed + self._ready_alerts
        if not written:
            return first_error
        fsync_directory(self.paths.alerts)
        records = []
        for pending, alert, path in written:
            channels = self.dispatcher.submit(alert) if self.live else []
            records.append(
                action_record(
                    "alert",
                    "success",
                    finding=pending.finding,
                    incident_id=pending.incident.id,
                    details={
                        "alert_id": alert["alert_id"],
                        "alert_path": str(path),
                        "reason": pending.reason,
                        "channels": channels,
                    },
                )
            )
        self.audit.append_many(records)
        return first_error

    def _block(self, finding: Finding, incident: Incident) -> None:
        """Queue a block of the incident's source; `flush` applies it and fills in its record."""
        self._pending_blocks.append(_PendingBlock(finding, incident, len(self._records)))
        self._records.append(None)

    def _apply_blocks(
        self, blocks: list[_PendingBlock], records: list[dict[str, Any] | None]
    ) -> dict[str, Incident]:
        """Apply the pending blocks and put each one's record into its slot.

        Returns the incidents that get a successful block record, by id.
        """
        requests = []
        for pending in blocks:
            incident = pending.incident
            assert incident.source_ip is not None
            requests.append(
                BlockRequest(
                    incident.source_ip,
                    reason=f"{incident.category} ({pending.finding.rule_id})",
                    incident_id=incident.id,
                )
            )
        results = self.blocks.block_many(requests)
        audited: dict[str, Incident] = {}
        for pending, result in zip(blocks, results, strict=True):
            record = self._block_record(pending.finding, pending.incident, result, audited)
            records[pending.slot] = record
            self._note_failed_block(pending, result)
        return audited

    def _note_failed_block(self, pending: _PendingBlock, result: BlockResult) -> None:
        """Keep a block the back-end failed to apply for `_retry_failed_blocks`."""
        self._failed_blocks.pop(result.address, None)
        if result.outcome != "failed":
            return
        self._failed_blocks[result.address] = pending
        if len(self._failed_blocks) > MAX_RETRIED_BLOCKS:
            address = next(iter(self._failed_blocks))
            dropped = self._failed_blocks.pop(address)
            log.warning("block_retry_dropped", address=address, incident_id=dropped.incident.id,
                        kept=MAX_RETRIED_BLOCKS)  # fmt: skip

    def _retry_failed_blocks(self) -> None:
        """Queue the failed blocks again once `blocking.retry_seconds` have passed."""
        now = time.monotonic()
        if not self._failed_blocks or now - self._retried_at < self.blocks.settings.retry_seconds:
            return
        self._retried_at = now
        retries, self._failed_blocks = self._failed_blocks, {}
        log.info("block_retry", addresses=len(retries), backend=self.blocks.backend.name)
        for pending in retries.values():
            # A success is recorded as any block is. The incident's `block_failed` marker stays,
            # so a firewall that stays down adds no failure record per retry.
            self._block(pending.finding, pending.incident)

    def _recorded_late(self, incident: Incident, result: BlockResult) -> bool:
        """Return whether an `already_blocked` result is this incident's own unaudited block.

        A crash or a failed audit write after `flush` applied a block but before its record
        was written leaves such a block. The finding read again then writes the record.
        """
        # NOTE: a ticket written before this marker existed lacks it, so the first finding of
        # such a restored incident whose block is still active writes one extra record.
        if BLOCK_AUDITED in incident.actions_done:
            return False
        entry = self.blocks.active_entry(result.address)
        return entry is not None and entry.get("incident_id") == incident.id

    def _block_record(
        self,
        finding: Finding,
        incident: Incident,
        result: BlockResult,
        audited: dict[str, Incident],
    ) -> dict[str, Any] | None:
        """Return the audit record of one block result, or None when it needs none."""
        recorded_late = False
        if result.outcome == "already_blocked":
            if incident.id in audited or not self._recorded_late(incident, result):
                return None
            recorded_late = True

        # ECS allows only success, failure and unknown in event.outcome. A block that was not
        # attempted (allowlisted, invalid, rate_limited) is `unknown`, with the reason in
        # irwatchd.block_result.
        outcome = {"blocked": "success", "already_blocked": "success", "failed": "failure"}.get(
            result.outcome, "unknown"
        )
        marker = f"block_{result.outcome}"
        if outcome != "success" and marker in incident.actions_done:
            return None  # this incident's skip, failure or rate limit is already audited
        incident.actions_done.add(marker)
        if outcome == "success":
            audited[incident.id] = incident

        expires = datetime.fromtimestamp(result.expires_at, UTC) if result.expires_at else None
        details: dict[str, Any] = {
            "block_result": "blocked" if recorded_late else result.outcome,
            "backend": self.blocks.backend.name,
            "expires_at": format_rfc3339(expires),
            "seconds": result.seconds,
            "offence": result.offences or None,
            "error": result.error,
        }
        if recorded_late:
            details["recorded_late"] = True
        self._log_block(result, incident, outcome)
        return action_record(
            "block",
            outcome,
            finding=finding,
            incident_id=incident.id,
            source_ip=result.address,
            details=details,
        )

    def _log_block(self, result: BlockResult, incident: Incident, outcome: str) -> None:
        if outcome == "success":
            # A scan's blocks are only simulated and listed in its report: debug level there.
            (log.info if self.live else log.debug)(
                "address_blocked",
                address=result.address,
                incident_id=incident.id,
                seconds=result.seconds,
                offence=result.offences,
            )
        elif result.outcome == "rate_limited":
            log.warning(
                "block_rate_limited",
                address=result.address,
                incident_id=incident.id,
                max_per_minute=self.config.blocking.max_blocks_per_minute,
            )

    def _forensics(self, finding: Finding, incident: Incident) -> None:
        try:
            manifest = save_evidence(self.paths.forensics, incident, self.config.forensics)
        except OSError as error:
            log.error("forensics_failed", incident_id=incident.id, error=str(error))
            self._records.append(
                action_record(
                    "forensics",
                    "failure",
                    finding=finding,
                    incident_id=incident.id,
                    details={"error": str(error)},
                )
            )
            return
        incident.actions_done.add("forensics")
        self._records.append(
            action_record(
                "forensics",
                "success",
                finding=finding,
                incident_id=incident.id,
                details={"manifest_path": str(manifest)},
            )
        )


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector, unless it was off already.

    A flush allocates tens of thousands of short-lived dicts while the daemon keeps many
    long-lived objects, and each collection those allocations start scans the long-lived
    objects again. Paused, the collections run once after the flush. In an in-process run of the
    responder with a 10,000-source burst, flushes took 2.4 s instead of 3.1 s, and `handle`,
    which then runs the deferred collections, 1.3 s instead of 1.1 s. The daemon also pauses it
    for each whole read, detection and `handle` included.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _check_backend(loaded: LoadedConfig) -> None:
    """Raise `ConfigError` naming each `blocking:` key whose program is missing."""
    problems = [
        Problem(str(loaded.path or "(built-in defaults)"), None, key, message)
        for key, message in backend_problems(loaded.config.blocking)
    ]
    if problems:
        raise ConfigError(problems)


def state_paths_for(config: str | None, state_dir: str | None) -> StatePaths:
    """Return the state layout a CLI command works on: `--state-dir`, else the config's."""
    config_path = Path(config) if config else default_config_path()
    return StatePaths(locate_state_dir(config_path, state_dir))


def add_state_options(parser: argparse.ArgumentParser) -> None:
    """Add `-c/--config` and `--state-dir`, which every state-reading subcommand takes."""
    parser.add_argument(
        "-c", "--config", help="config file whose state_dir to use (default: etc/irwatchd.yaml)"
    )
    parser.add_argument("--state-dir", help="state directory of the daemon (overrides the config)")
