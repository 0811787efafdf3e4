"""Alerts: when an incident deserves one, what it contains, and its file in the state directory.

An incident alerts when it opens, when its severity rises, and otherwise at most once per
`reminder_minutes` while findings keep arriving, unless it is acknowledged. Every alert
is written as its own JSON file under `alerts/` and then queued for each channel (see
`irwatchd.response.delivery`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from irwatchd.correlation.incidents import Incident, IncidentUpdate
from irwatchd.detection.finding import Finding
from irwatchd.jsonfiles import write_json_atomic
from irwatchd.parsing.timestamps import format_rfc3339

EVIDENCE_IN_ALERT = 5


def alert_reason(update: IncidentUpdate, now: datetime, reminder: timedelta) -> str | None:
    """Return why a finding alerts: `new_incident`, `severity_raised`, `reminder`, or None."""
    incident = update.incident
    if update.is_new:
        return "new_incident"
    if update.escalated:
        return "severity_raised"
    if incident.status == "acknowledged":
        return None  # a person is on it: only a severity rise alerts again
    if incident.last_alert_at is not None and now - incident.last_alert_at >= reminder:
        return "reminder"
    return None


def alert_document(finding: Finding, incident: Incident, reason: str) -> dict[str, Any]:
    """Build the alert JSON: its id, the reason, the incident and the last few evidence lines."""
    return {
        "alert_id": uuid.uuid4().hex,
        "created": format_rfc3339(datetime.now(UTC)),
        "reason": reason,
        "rule": finding.rule_id,
        "user": finding.user,
        "incident": incident.to_json() | {"evidence": incident.evidence[-EVIDENCE_IN_ALERT:]},
    }


def write_alert_file(directory: Path, alert: dict[str, Any]) -> Path:
    """Write one alert as its own JSON file and return the path.

    The file is not fsynced: the caller fsyncs `directory` once for a batch of alerts.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = directory / f"{stamp}-{alert['alert_id']}.json"
    write_json_atomic(path, alert, durable=False, indent=None)
    return path
