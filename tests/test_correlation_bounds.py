"""Memory bounds of correlation: incidents closed by count and idle time, windows, evidence."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from irwatchd.audit.log import AuditLog
from irwatchd.config import CorrelationSpec, LoadedConfig, validate_config
from irwatchd.correlation.evidence import EvidenceLines
from irwatchd.correlation.incidents import (
    CUT_EVIDENCE_CHARS,
    CUT_EVIDENCE_NOTE,
    MAX_EVIDENCE_LINE_CHARS,
    Incident,
    IncidentTracker,
)
from irwatchd.correlation.windows import SlidingWindows
from irwatchd.detection.finding import Finding
from irwatchd.parsing.record import LogRecord
from irwatchd.response.responder import Responder, StatePaths
from tests.helpers import audit_actions

START = datetime(2026, 12, 1, tzinfo=UTC)


def _finding(
    address: str, offset: int, moment: datetime | None = None, *, user: str = "root"
) -> Finding:
    line = f"Dec  1 00:00:00 bastion sshd[1]: Failed password for {user} from {address} port 22"
    record = LogRecord(raw=line, view=line, source_type="syslog", path="/var/log/auth.log",
                       offset=offset, time=moment, host="bastion")  # fmt: skip
    return Finding(rule_id="sshd-failed-auth", category="failed_login", severity="low",
                   record=record, source_ip=address, user="root")  # fmt: skip


def _responder(tmp_path: Path, *, live: bool) -> tuple[Responder, AuditLog, StatePaths]:
    config = validate_config({"policy": {"low": ["audit", "ticket"]}, "correlation": []})
    paths = StatePaths(tmp_path / "state")
    paths.create()
    audit = AuditLog(paths.audit_log)
    return Responder(LoadedConfig(config, None), paths, audit, live=live), audit, paths


def test_responder_closes_oldest_at_max_open(tmp_path: Path) -> None:
    responder, audit, paths = _responder(tmp_path, live=True)
    responder.incidents.max_open = 3
    addresses = [f"192.0.2.{number}" for number in range(1, 11)]
    opened = []
    for number, address in enumerate(addresses):
        responder.handle(_finding(address, 100 * number))
        incident = responder.incidents.get(("failed_login", address, "bastion"))
        assert incident is not None
        opened.append(incident.id)
    responder.close()
    audit.close()

    assert len(responder.incidents) == 3
    assert [i.source_ip for i in responder.incidents.open_incidents()] == addresses[7:]
    closes = audit_actions(paths.root, "incident_close")
    assert [record["irwatchd"]["incident_id"] for record in closes] == opened[:7]
    assert [record["source"]["ip"] for record in closes] == addresses[:7]
    assert {record["irwatchd"]["reason"] for record in closes} == {"max_open"}
    for incident_id in opened[:7]:
        ticket = json.loads(paths.tickets.joinpath(f"{incident_id}.json").read_text())
        assert ticket["status"] == "closed"


def test_responder_closes_idle_incidents_by_time(tmp_path: Path) -> None:
    responder, audit, paths = _responder(tmp_path, live=False)
    responder.handle(_finding("192.0.2.1", 0, START))
    responder.handle(_finding("192.0.2.2", 100, START + timedelta(minutes=30)))
    responder.handle(_finding("192.0.2.3", 200, START + timedelta(minutes=61)))
    responder.close()
    audit.close()

    open_addresses = [i.source_ip for i in responder.incidents.open_incidents()]
    assert open_addresses == ["192.0.2.2", "192.0.2.3"]
    closes = audit_actions(paths.root, "incident_close")
    assert [record["source"]["ip"] for record in closes] == ["192.0.2.1"]
    assert closes[0]["irwatchd"]["reason"] == "idle"


def test_tracker_keeps_max_evidence_lines() -> None:
    tracker = IncidentTracker(max_evidence=4)
    for number in range(10):
        update = tracker.add(_finding("192.0.2.1", 100 * number), START)

    evidence = update.incident.evidence
    assert len(evidence) == 4
    assert [item["offset"] for item in evidence] == [0, 100, 200, 300]
    assert update.incident.count == 10


def test_tracker_cuts_evidence_past_budget() -> None:
    long_user = "x" * 10_000
    tracker = IncidentTracker(max_open=3, max_evidence_chars=2 * MAX_EVIDENCE_LINE_CHARS)
    lines = []
    for number in range(4):
        update = tracker.add(_finding(f"192.0.2.{number + 1}", 0, user=long_user), START)
        lines.append(update.incident.evidence[0]["line"])

    # The first two lines are cut only to the per-line limit, and the third is cut short.
    assert [len(line) for line in lines[:2]] == [MAX_EVIDENCE_LINE_CHARS] * 2
    assert lines[2].endswith(CUT_EVIDENCE_NOTE)
    assert len(lines[2]) == CUT_EVIDENCE_CHARS + len(CUT_EVIDENCE_NOTE)
    assert lines[2].startswith("Dec  1 00:00:00 bastion sshd[1]: Failed password for xxx")
    # The fourth incident evicted the first, whose characters were given back.
    assert len(tracker) == 3
    assert tracker.evidence_chars == sum(len(line) for line in lines[1:])


def test_windows_drop_least_recent_source() -> None:
    spec = CorrelationSpec(name="brute-force", categories=["failed_login"], threshold=3,
                           window_seconds=600, category="brute_force", severity="high")  # fmt: skip
    windows = SlidingWindows([spec], max_sources=2)
    for _ in range(2):
        windows.observe(_finding("192.0.2.1", 0), START)
    windows.observe(_finding("192.0.2.2", 0), START)
    windows.observe(_finding("192.0.2.3", 0), START)

    assert len(windows) == 2
    # 192.0.2.1 was dropped with its two failures, so its count starts again from zero.
    assert windows.observe(_finding("192.0.2.1", 0), START) == []
    assert windows.observe(_finding("192.0.2.1", 0), START) == []
    (fired,) = windows.observe(_finding("192.0.2.1", 0), START)
    assert fired.count == 3


def test_windows_fire_once_per_quiet_period() -> None:
    spec = CorrelationSpec(name="brute-force", categories=["failed_login"], threshold=3,
                           window_seconds=600, category="brute_force", severity="high")  # fmt: skip
    windows = SlidingWindows([spec])
    fired = [
        len(windows.observe(_finding("192.0.2.1", 0), START + timedelta(seconds=step)))
        for step in range(6)
    ]
    later = windows.observe(_finding("192.0.2.1", 0), START + timedelta(seconds=5 + 601))
    again = [
        len(windows.observe(_finding("192.0.2.1", 0), START + timedelta(seconds=5 + 601 + step)))
        for step in range(1, 4)
    ]

    assert fired == [0, 0, 1, 0, 0, 0]
    assert later == [], "one failure after a quiet window starts a new count"
    assert again == [0, 1, 0], "the new count fires once more at the threshold"


def test_windows_evicted_source_fires_again() -> None:
    spec = CorrelationSpec(name="brute-force", categories=["failed_login"], threshold=2,
                           window_seconds=600, category="brute_force", severity="high")  # fmt: skip
    windows = SlidingWindows([spec], max_sources=1)
    first = [len(windows.observe(_finding("192.0.2.1", 0), START)) for _ in range(2)]
    windows.observe(_finding("192.0.2.2", 0), START)
    # White-box: the fired marks are bounded like the windows, so eviction drops them too.
    fired_after_eviction = set(windows._fired)
    returned = [len(windows.observe(_finding("192.0.2.1", 0), START)) for _ in range(2)]

    assert first == [0, 1]
    assert fired_after_eviction == set()
    assert returned == [0, 1], "an evicted source starts again, fired state included"


def test_windows_expire_quiet_pairs() -> None:
    spec = CorrelationSpec(name="brute-force", categories=["failed_login"], threshold=2,
                           window_seconds=600, category="brute_force", severity="high")  # fmt: skip
    windows = SlidingWindows([spec])
    fired = [len(windows.observe(_finding("192.0.2.1", 0), START)) for _ in range(2)]
    for second in range(1, 2001):
        address = f"2001:db8::{second:x}"
        windows.observe(_finding(address, 0), START + timedelta(seconds=second))

    assert fired == [0, 1]
    # One source a second: the pairs of the last 600 s stay, the older ones are gone.
    assert len(windows) == 601
    assert windows._fired == set(), "the fired mark left with its pair"
    late = START + timedelta(seconds=2001)
    assert windows.observe(_finding("192.0.2.1", 0), late) == []
    assert len(windows.observe(_finding("192.0.2.1", 0), late)) == 1


def test_evidence_round_trips_through_ticket_json() -> None:
    items: list[dict[str, object]] = [
        {"path": "/var/log/auth.log", "offset": 0, "line": "first"},
        {"path": "/var/log/secure", "offset": 12, "line": "caf\u00e9 \u0000 nul"},
        {"path": "/var/log/auth.log", "offset": 40, "line": ""},
    ]
    evidence = EvidenceLines(items)

    assert evidence.to_json() == items
    assert evidence[-2:] == items[-2:]
    assert evidence[1] == items[1]
    assert json.loads(json.dumps(evidence.to_json())) == items


def test_evidence_keeps_other_shapes() -> None:
    items: list[dict[str, object]] = [
        {"path": "/var/log/auth.log", "offset": 0, "line": "first"},
        {"path": "/var/log/auth.log", "offset": "12", "line": "offset as text"},
        {"line": "no path", "note": "edited by hand"},
    ]
    evidence = EvidenceLines(items)
    evidence.append_line("/var/log/auth.log", 99, "after")

    assert evidence.to_json() == [*items, {"path": "/var/log/auth.log", "offset": 99,
                                           "line": "after"}]  # fmt: skip


def test_incident_json_round_trip() -> None:
    tracker = IncidentTracker()
    update = tracker.add(_finding("192.0.2.1", 0), START)
    tracker.add(_finding("192.0.2.1", 100), START + timedelta(seconds=1))
    incident = update.incident
    incident.actions_done.add("block_rate_limited")

    document = json.loads(json.dumps(incident.to_json()))
    restored = Incident.from_json(document)

    assert restored.to_json() == incident.to_json()
    assert document["actions_done"] == ["block_rate_limited"]
    assert [item["offset"] for item in document["evidence"]] == [0, 100]


def test_evidence_tail_matches_slice() -> None:
    items: list[dict[str, object]] = [
        {"path": "/var/log/auth.log", "offset": 0, "line": "first"},
        {"path": "/var/log/secure", "offset": 12, "line": "caf\u00e9 \u0000 nul"},
        {"path": "/var/log/auth.log", "offset": 40, "line": ""},
        {"path": "/var/log/auth.log", "offset": 41, "line": "last"},
    ]
    compact = EvidenceLines(items)
    plain = EvidenceLines([*items, {"note": "not the compact shape"}])

    for count in range(len(items) + 2):
        tail = compact.tail(count)
        expected = items[-count:] if count else []
        assert tail.to_json() == expected, count
        assert tail.text_size() == sum(len(str(item["line"])) for item in expected)
        assert plain.tail(count).to_json() == (plain.to_json()[-count:] if count else [])
    # The tail is a copy: adding to it leaves the original as it was.
    compact.tail(2).append_line("/var/log/auth.log", 99, "added")
    assert compact.to_json() == items


def test_tracker_first_seen_moves_back() -> None:
    tracker = IncidentTracker()
    later = START + timedelta(minutes=30)
    opened = tracker.add(_finding("192.0.2.1", 0, later), later).incident
    tracker.add(_finding("192.0.2.1", 100, START), START)
    assert opened.first_seen == START
    assert opened.last_seen == later
    assert len(tracker) == 1
