"""Incidents: findings grouped by (category, source address, host) into one record each.

An incident stays open while findings keep arriving; one that has been quiet for
`idle_seconds` is closed, and a later finding with the same key opens a new incident that
refers to the closed one. `acknowledged` is an open incident that a person has seen: it
keeps collecting findings. The tracker only keeps memory state; the responder saves tickets
and brings incidents back from them at start (`restore`).
"""

from __future__ import annotations

import hashlib
import sys
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from irwatchd.correlation.evidence import EvidenceLines
from irwatchd.detection.finding import Finding, severity_rank
from irwatchd.parsing.timestamps import format_rfc3339, parse_iso8601

DEFAULT_MAX_OPEN = 20_000
"""Open incidents kept in memory; past it the least recently updated one is closed.

An open incident with a few evidence lines takes about 1 KiB (tracemalloc, CPython 3.11), so
this bound keeps them near 20 MiB. An incident closed this way is audited with the reason
`max_open`, and the next finding for its key opens a new incident that names it as `previous_id`.
"""
MAX_EVIDENCE_LINE_CHARS = 4096
"""Characters of one evidence line kept in memory and in the ticket."""

DEFAULT_MAX_EVIDENCE_CHARS = 32 << 20
"""Characters of evidence text the open incidents may hold together.

Past it, each new evidence line keeps only its first `CUT_EVIDENCE_CHARS` characters and a
note. The whole line stays in the log file at the path and offset the item names, so a
forensic copy still reads it from there. Without this bound, 20,000 incidents of 50 lines of 4,096
characters could take 4 GiB.
"""

CUT_EVIDENCE_CHARS = 256
CUT_EVIDENCE_NOTE = " [cut by irwatchd: evidence memory budget reached; see path and offset]"
STATUSES = ("open", "acknowledged", "closed")

IncidentKey = tuple[str, str | None, str | None]


@dataclass(slots=True)
class Incident:
    """One incident and what the responses need to know about it."""

    id: str
    category: str
    source_ip: str | None
    host: str | None
    first_seen: datetime
    last_seen: datetime
    severity: str
    count: int = 0
    rules: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    evidence: EvidenceLines = field(default_factory=EvidenceLines)
    status: str = "open"
    previous_id: str | None = None
    last_alert_at: datetime | None = None
    # None until the first action is marked: an empty set takes 216 bytes, and most incidents
    # of a flood of single failures never get one.
    _actions_done: set[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.evidence, EvidenceLines):
            self.evidence = EvidenceLines(self.evidence)

    @property
    def actions_done(self) -> set[str]:
        """Markers of the actions already run or audited for this incident, such as `forensics`."""
        if self._actions_done is None:
            self._actions_done = set()
        return self._actions_done

    @property
    def key(self) -> IncidentKey:
        """The grouping key: category, source address and host."""
        return (self.category, self.source_ip, self.host)

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Incident:
        """Rebuild an incident from its ticket (the inverse of `to_json`)."""
        last_alert = document.get("last_alert_at")
        return cls(
            id=str(document["id"]),
            category=str(document["category"]),
            source_ip=document.get("source_ip"),
            host=document.get("host"),
            first_seen=_parse_time(document["first_seen"]),
            last_seen=_parse_time(document["last_seen"]),
            severity=str(document["severity"]),
            count=int(document.get("count", 0)),
            rules=list(document.get("rules", [])),
            users=list(document.get("users", [])),
            evidence=EvidenceLines(document.get("evidence", [])),
            status=str(document.get("status", "open")),
            previous_id=document.get("previous_id"),
            last_alert_at=_parse_time(last_alert) if last_alert else None,
            _actions_done=set(document.get("actions_done", [])) or None,
        )

    def to_json(self) -> dict[str, object]:
        """Return the incident as a JSON-ready object."""
        return {
            "id": self.id,
            "status": self.status,
            "category": self.category,
            "severity": self.severity,
            "source_ip": self.source_ip,
            "host": self.host,
            "first_seen": format_rfc3339(self.first_seen),
            "last_seen": format_rfc3339(self.last_seen),
            "count": self.count,
            "rules": self.rules,
            "users": self.users,
            "evidence": self.evidence.to_json(),
            "previous_id": self.previous_id,
            "actions_done": sorted(self._actions_done or ()),
            "last_alert_at": format_rfc3339(self.last_alert_at) if self.last_alert_at else None,
        }


def _parse_time(value: object) -> datetime:
    parsed = parse_iso8601(str(value))
    if parsed is None:
        raise ValueError(f"{value!r} is not an RFC 3339 time")
    return parsed


@dataclass(frozen=True, slots=True)
class IncidentUpdate:
    """The incident a finding went to, and whether it was new or raised its severity."""

    incident: Incident
    is_new: bool
    escalated: bool


def incident_id(
    category: str,
    source_ip: str | None,
    host: str | None,
    opened: datetime,
    previous_id: str | None = None,
) -> str:
    """Derive a stable id from the key and the opening time, so a re-read line maps to it again.

    An incident that follows a closed one of the same key also hashes that one's id. Two logs
    can hold lines of the same second, and without it an incident reopened by the second log
    would take the id, and the ticket, of the one the first log opened.
    """
    key = f"{category}|{source_ip}|{host}|{opened.isoformat()}"
    if previous_id is not None:
        key += f"|after {previous_id}"
    return "inc-" + hashlib.sha256(key.encode()).hexdigest()[:16]


class IncidentTracker:
    """Open incidents by key, with idle closing and a bound on how many stay in memory."""

    def __init__(
        self,
        idle_seconds: float = 3600,
        max_evidence: int = 50,
        max_open: int = DEFAULT_MAX_OPEN,
        max_evidence_chars: int = DEFAULT_MAX_EVIDENCE_CHARS,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.max_evidence = max_evidence
        self.max_open = max_open
        self.max_evidence_chars = max_evidence_chars
        self.evidence_chars = 0
        """Characters of evidence text held by the open incidents."""
        self._open: OrderedDict[IncidentKey, Incident] = OrderedDict()
        self._closed_ids: dict[IncidentKey, str] = {}
        self.just_closed: deque[tuple[Incident, str]] = deque()
        """Incidents closed since the caller last cleared it, with the reason: `idle`, or
        `max_open` for the memory bound."""
        self.new_evidence: Callable[[], EvidenceLines] = EvidenceLines
        """Makes the evidence list of a new incident; a scan's lists keep their text on disk."""

    def __len__(self) -> int:
        return len(self._open)

    def get(self, key: IncidentKey) -> Incident | None:
        """Return the open incident for a key, if any."""
        return self._open.get(key)

    def copy_evidence(self, target: Incident, source: Incident, count: int) -> None:
        """Make the last `count` evidence lines of `source` the evidence of `target`.

        A correlated incident (five failures make a `brute_force`) is filed with the line
        that completed it. This gives it the lines that led up to it as well, which end with
        that same line.
        """
        if min(count, len(source.evidence)) <= len(target.evidence):
            return
        if target.key in self._open:
            self.evidence_chars -= target.evidence.text_size()
        target.evidence = source.evidence.tail(count)
        if target.key in self._open:
            self.evidence_chars += target.evidence.text_size()

    def close(self, key: IncidentKey) -> None:
        """Close the open incident for a key (a person closed its ticket)."""
        incident = self._open.get(key)
        if incident is not None:
            self._close(key, incident)

    def restore(self, incidents: list[Incident]) -> None:
        """Take back incidents saved as tickets: open ones stay open, closed ones are remembered."""
        for incident in sorted(incidents, key=lambda item: item.last_seen):
            if incident.status == "closed":
                self._closed_ids[incident.key] = incident.id
            else:
                self._open[incident.key] = incident
                self.evidence_chars += incident.evidence.text_size()

    def open_incidents(self) -> list[Incident]:
        """Return the incidents currently open."""
        return list(self._open.values())

    def add(self, finding: Finding, moment: datetime) -> IncidentUpdate:
        """File a finding under its incident, opening one when none is open for its key."""
        self._close_idle(moment)
        host = finding.record.host
        if host is not None:
            # Each parsed line has its own copy of the host name, so keep one copy per name.
            host = sys.intern(host)
        key = (finding.category, finding.source_ip, host)
        incident = self._open.get(key)
        if (
            incident is not None
            and (moment - incident.last_seen).total_seconds() > self.idle_seconds
        ):
            self._close(key, incident)
            self.just_closed.append((incident, "idle"))
            incident = None
        is_new = incident is None
        escalated = False
        if incident is None:
            previous_id = self._closed_ids.get(key)
            incident = Incident(
                id=incident_id(finding.category, finding.source_ip, host, moment, previous_id),
                category=finding.category,
                source_ip=finding.source_ip,
                host=host,
                first_seen=moment,
                last_seen=moment,
                severity=finding.severity,
                previous_id=previous_id,
                evidence=self.new_evidence(),
            )
            self._open[key] = incident
            if len(self._open) > self.max_open:
                old_key, old = next(iter(self._open.items()))
                self._close(old_key, old)
                self.just_closed.append((old, "max_open"))
        else:
            self._open.move_to_end(key)
            if severity_rank(finding.severity) > severity_rank(incident.severity):
                incident.severity = finding.severity
                escalated = True
        incident.first_seen = min(incident.first_seen, moment)
        incident.last_seen = max(incident.last_seen, moment)
        incident.count += finding.count
        if finding.rule_id not in incident.rules:
            incident.rules.append(finding.rule_id)
        if finding.user and finding.user not in incident.users and len(incident.users) < 20:
            # A few names (root, admin) recur across thousands of incidents: keep one copy.
            incident.users.append(sys.intern(finding.user))
        if len(incident.evidence) < self.max_evidence:
            record = finding.record
            line = record.raw[:MAX_EVIDENCE_LINE_CHARS]
            if self.evidence_chars + len(line) > self.max_evidence_chars:
                line = line[:CUT_EVIDENCE_CHARS] + CUT_EVIDENCE_NOTE
            incident.evidence.append_line(record.path, record.offset, line)
            self.evidence_chars += len(line)
        return IncidentUpdate(incident, is_new, escalated)

    def _close_idle(self, moment: datetime) -> None:
        """Close the least recently updated incidents while they have been quiet too long.

        The open incidents are kept in the order of their last finding, so only the first ones
        need a look. After a finding whose time is older than the finding before it, an idle
        incident can sit behind one that is not idle, and stays open until that one closes.
        """
        while self._open:
            key, incident = next(iter(self._open.items()))
            if (moment - incident.last_seen).total_seconds() <= self.idle_seconds:
                return
            self._close(key, incident)
            self.just_closed.append((incident, "idle"))

    def _close(self, key: IncidentKey, incident: Incident) -> None:
        incident.status = "closed"
        if self._open.pop(key, None) is not None:
            self.evidence_chars -= incident.evidence.text_size()
        self._closed_ids[key] = incident.id
        if len(self._closed_ids) > self.max_open:
            self._closed_ids.pop(next(iter(self._closed_ids)))
