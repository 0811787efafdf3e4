"""Tickets: one JSON file per incident, rewritten in place as the incident grows."""

from __future__ import annotations

from pathlib import Path

from irwatchd.correlation.incidents import Incident
from irwatchd.jsonfiles import write_json_atomic

# TheHive's alert fields, so a ticket maps onto a TheHive alert without renaming.
_THEHIVE_SEVERITY = {"low": 1, "medium": 2, "high": 3, "critical": 4}


def ticket_document(incident: Incident) -> dict[str, object]:
    """Build the ticket JSON for an incident."""
    source = incident.source_ip or "unknown source"
    return incident.to_json() | {
        "title": f"{incident.category} from {source}",
        "description": (
            f"{incident.count} finding(s) of {incident.category} from {source} between "
            f"{incident.to_json()['first_seen']} and {incident.to_json()['last_seen']}; "
            f"rules: {', '.join(incident.rules)}"
        ),
        "type": "irwatchd",
        "source": "irwatchd",
        "sourceRef": incident.id,
        "thehive_severity": _THEHIVE_SEVERITY[incident.severity],
        "tags": [f"category:{incident.category}", *[f"rule:{rule}" for rule in incident.rules]],
    }


def write_ticket(directory: Path, incident: Incident) -> Path:
    """Write or update the incident's ticket and return its path."""
    path = directory / f"{incident.id}.json"
    write_json_atomic(path, ticket_document(incident))
    return path
