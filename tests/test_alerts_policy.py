"""When an incident alerts: on open, on a severity rise, and at most one reminder per period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from irwatchd.correlation.incidents import Incident, IncidentUpdate
from irwatchd.response.alerts import alert_reason

START = datetime(2026, 1, 1, tzinfo=UTC)
REMINDER = timedelta(minutes=30)


def _incident(last_alert_at: datetime | None) -> Incident:
    return Incident(
        id="inc-1",
        category="sqli",
        source_ip="192.0.2.1",
        host=None,
        first_seen=START,
        last_seen=START,
        severity="high",
        last_alert_at=last_alert_at,
    )


def test_new_incident_alerts() -> None:
    update = IncidentUpdate(_incident(None), is_new=True, escalated=False)
    assert alert_reason(update, START, REMINDER) == "new_incident"


def test_escalation_alerts_within_period() -> None:
    update = IncidentUpdate(_incident(START), is_new=False, escalated=True)
    assert alert_reason(update, START + timedelta(seconds=1), REMINDER) == "severity_raised"


def test_repeat_waits_for_reminder_period() -> None:
    update = IncidentUpdate(_incident(START), is_new=False, escalated=False)
    assert alert_reason(update, START + timedelta(minutes=29), REMINDER) is None
    assert alert_reason(update, START + timedelta(minutes=30), REMINDER) == "reminder"


def test_acknowledged_incident_skips_reminders() -> None:
    incident = _incident(START)
    incident.status = "acknowledged"
    later = START + timedelta(hours=5)
    assert (
        alert_reason(IncidentUpdate(incident, is_new=False, escalated=False), later, REMINDER)
        is None
    )
    assert alert_reason(
        IncidentUpdate(incident, is_new=False, escalated=True), later, REMINDER
    ) == ("severity_raised")
