"""Route each finding through correlation, incidents and the severity policy, auditing each step.

For every finding the order is: audit the finding, then run the actions its incident's
severity calls for, auditing each one. Actions run once per incident (a block, an alert, a
forensic copy) or update it (the ticket), so a thousand lines of one attack make one block,
one ticket and a handful of alerts, not a thousand of each.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from irwatchd.audit.log import AuditLog
from irwatchd.audit.records import action_record, finding_record
from irwatchd.config import LoadedConfig
from irwatchd.correlation.incidents import Incident, IncidentTracker, IncidentUpdate
from irwatchd.correlation.windows import SlidingWindows
from irwatchd.detection.finding import Finding
from irwatchd.parsing.timestamps import format_rfc3339
from irwatchd.response.alerts import WebhookSender, write_alert_file
from irwatchd.response.allowlist import Allowlist
from irwatchd.response.blocking import BlockStore, SimulatedBackend
from irwatchd.response.forensics import save_evidence
from irwatchd.response.tickets import write_ticket

log = structlog.get_logger(__name__)

MAX_CLOCK_SKEW = timedelta(hours=1)
"""A log time further than this from the clock is not trusted for windows; arrival time is."""


@dataclass(frozen=True, slots=True)
class StatePaths:
    """Where each kind of state lives under the state directory."""

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
    """Owns correlation state and runs the policy; one instance lives as long as the daemon."""

    def __init__(self, loaded: LoadedConfig, paths: StatePaths, audit: AuditLog, *, live: bool = True) -> None:
        self.paths = paths
        self.audit = audit
        self.live = live
        self.blocks = BlockStore(paths.blocks, SimulatedBackend(), Allowlist(loaded.config.blocking.allowlist))
        self.incidents = IncidentTracker(max_evidence=loaded.config.tickets.max_evidence_lines)
        self.webhook: WebhookSender | None = None
        self.counts: dict[str, int] = {}
        self.apply_config(loaded)

    def apply_config(self, loaded: LoadedConfig) -> None:
        """Take the policy, windows and action settings of a (re)loaded config."""
        config = loaded.config
        self.config = config
        self.windows = SlidingWindows(config.correlation)
        self.blocks.allowlist = Allowlist(config.blocking.allowlist)
        self.incidents.max_evidence = config.tickets.max_evidence_lines
        url = config.alerts.webhook_url
        if self.webhook is not None and (url is None or url != self.webhook.url):
            self.webhook.close(timeout=1.0)
            self.webhook = None
        if url is not None and self.webhook is None:
            self.webhook = WebhookSender(
                url, config.alerts.webhook_timeout_seconds, config.alerts.webhook_max_attempts
            )

    def close(self) -> None:
        """Stop the webhook thread after it tried what is queued."""
        if self.webhook is not None:
            self.webhook.close()

    def _moment(self, finding: Finding) -> datetime:
        now = datetime.now(UTC)
        logged = finding.record.time
        if not self.live and logged is not None:
            return logged
        if logged is not None and abs(logged - now) <= MAX_CLOCK_SKEW:
            return logged
        return now

    def handle(self, finding: Finding) -> None:
        """Audit a finding and run what its severity calls for, then do the same for what it completes."""
        moment = self._moment(finding)
        self._respond(finding, moment)
        for correlated in self.windows.observe(finding, moment):
            self._respond(correlated, moment)

    def _respond(self, finding: Finding, moment: datetime) -> None:
        update = self.incidents.add(finding, moment)
        incident = update.incident
        self.audit.append(finding_record(finding, dedup_key(finding), incident.id))
        self.counts[finding.category] = self.counts.get(finding.category, 0) + 1
        actions = self.config.policy.actions_for(incident.severity)
        if "ticket" in actions:
            self._ticket(finding, incident)
        if "alert" in actions and (update.is_new or update.escalated):
            self._alert(finding, update)
        if "block" in actions and incident.source_ip is not None:
            self._block(finding, incident)
        if "forensics" in actions and (update.is_new or update.escalated):
            self._forensics(finding, incident)

    def _ticket(self, finding: Finding, incident: Incident) -> None:
        path = write_ticket(self.paths.tickets, incident)
        self.audit.append(
            action_record("ticket", "success", finding=finding, incident_id=incident.id,
                          details={"ticket_path": str(path), "count": incident.count})
        )  # fmt: skip

    def _alert(self, finding: Finding, update: IncidentUpdate) -> None:
        incident = update.incident
        alert: dict[str, Any] = {
            "alert_id": uuid.uuid4().hex[:16],
            "created": format_rfc3339(datetime.now(UTC)),
            "reason": "new_incident" if update.is_new else "severity_raised",
            "incident": incident.to_json() | {"evidence": incident.evidence[-5:]},
            "rule": finding.rule_id,
        }
        path = write_alert_file(self.paths.alerts, alert)
        if self.webhook is not None:
            self.webhook.submit(alert)
        self.audit.append(
            action_record("alert", "success", finding=finding, incident_id=incident.id,
                          details={"alert_id": alert["alert_id"], "alert_path": str(path),
                                   "webhook": self.webhook is not None})
        )  # fmt: skip

    def _block(self, finding: Finding, incident: Incident) -> None:
        assert incident.source_ip is not None
        result = self.blocks.block(
            incident.source_ip,
            self.config.blocking.duration_seconds,
            reason=f"{incident.category} ({finding.rule_id})",
            incident_id=incident.id,
        )
        if result.outcome == "already_blocked":
            return
        if result.outcome in ("allowlisted", "invalid"):
            if "block" in incident.actions_done:
                return  # the skip was audited when the incident first asked for a block
            outcome = "skipped"
        else:
            outcome = "success"
        incident.actions_done.add("block")
        self.audit.append(
            action_record(
                "block", outcome, finding=finding, incident_id=incident.id, source_ip=result.address,
                details={"block_result": result.outcome, "backend": self.blocks.backend.name,
                         "expires_at": format_rfc3339(datetime.fromtimestamp(result.expires_at, UTC))
                         if result.expires_at else None},
            )
        )  # fmt: skip
        if outcome == "success":
            log.info("address_blocked", address=result.address, incident_id=incident.id)

    def _forensics(self, finding: Finding, incident: Incident) -> None:
        manifest = save_evidence(self.paths.forensics, incident)
        self.audit.append(
            action_record("forensics", "success", finding=finding, incident_id=incident.id,
                          details={"manifest_path": str(manifest)})
        )  # fmt: skip
