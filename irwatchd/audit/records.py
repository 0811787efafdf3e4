"""Audit records in Elastic Common Schema shape, for findings and for actions."""

from __future__ import annotations

from typing import Any

from irwatchd.audit.log import SEVERITY_NUMBER
from irwatchd.detection.finding import Finding
from irwatchd.parsing.timestamps import format_rfc3339

# ECS event.category values that fit each irwatchd category.
_ECS_CATEGORY = {
    "failed_login": ["authentication"],
    "brute_force": ["authentication", "intrusion_detection"],
    "privilege_escalation": ["iam", "intrusion_detection"],
}


def finding_record(
    finding: Finding, dedup_key: str, incident_id: str | None, *, line_number_known: bool = True
) -> dict[str, Any]:
    """Build the audit record of one finding; the raw line is kept exactly as read.

    The line number is written as null when it is 0 or `line_number_known` is false.
    """
    record = finding.record
    document: dict[str, Any] = {
        "event": {
            "kind": "alert",
            "category": _ECS_CATEGORY.get(finding.category, ["intrusion_detection", "web"]),
            "action": "finding",
            "severity": SEVERITY_NUMBER[finding.severity],
            "created": format_rfc3339(record.time),
            "original": record.raw,
        },
        "rule": {"id": finding.rule_id, "category": finding.category},
        "source": {"ip": finding.source_ip},
        "user": {"name": finding.user},
        "host": {"name": record.host},
        "log": {"file": {"path": record.path}, "offset": record.offset},
        "irwatchd": {
            "category": finding.category,
            "severity": finding.severity,
            "count": finding.count,
            "line_number": (record.line_number or None) if line_number_known else None,
            "source_type": record.source_type,
            "dedup_key": dedup_key,
            "incident_id": incident_id,
        },
    }
    if record.raw_sha256 is not None:
        document["irwatchd"]["raw_bytes_sha256"] = record.raw_sha256
    return document


def action_record(
    action: str,
    outcome: str,
    *,
    finding: Finding | None = None,
    incident_id: str | None = None,
    source_ip: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the audit record of one action (block, alert, ticket, forensics, reload, ...)."""
    document: dict[str, Any] = {
        "event": {"kind": "event", "category": ["process"], "action": action, "outcome": outcome},
        "source": {
            "ip": source_ip if source_ip is not None else (finding.source_ip if finding else None)
        },
        "irwatchd": {"incident_id": incident_id} | (details or {}),
    }
    if finding is not None:
        document["rule"] = {"id": finding.rule_id, "category": finding.category}
        document["event"]["severity"] = SEVERITY_NUMBER[finding.severity]
    return document
