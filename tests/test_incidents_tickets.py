"""Incidents and tickets with the daemon running: updates, ack and close by CLI, restarts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from irwatchd.audit.log import AuditLog
from irwatchd.config import LoadedConfig, validate_config
from irwatchd.correlation.incidents import Incident
from irwatchd.detection.finding import Finding
from irwatchd.parsing.record import LogRecord
from irwatchd.response.responder import Responder, StatePaths
from irwatchd.response.tickets import TicketStore
from tests.helpers import ROOT, append_lines, audit_actions, run_cli, running_daemon, wait_until

SOURCE = "203.0.113.50"


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "irwatchd.yaml"
    path.write_text(
        f"""
rules:
  files: ["{ROOT}/etc/rules.d/*.yaml"]
policy:
  low: [audit, ticket]
correlation: []
"""
    )
    return path


def _failed(user: str) -> str:
    prefix = "Dec 10 06:55:48 bastion sshd[24200]"
    return f"{prefix}: Failed password for {user} from {SOURCE} port 22 ssh2"


def _tickets(state: Path) -> dict[str, dict[str, Any]]:
    tickets = {}
    for path in (state / "alerts" / "tickets").glob("inc-*.json"):
        document = json.loads(path.read_text())
        tickets[document["id"]] = document
    return tickets


def _one_ticket_with(state: Path, count: int) -> dict[str, Any] | None:
    tickets = [t for t in _tickets(state).values() if t["count"] == count]
    return tickets[0] if len(tickets) == 1 else None


def test_ticket_lifecycle_with_cli(tmp_path: Path) -> None:
    config = _config(tmp_path)
    state, log = tmp_path / "state", tmp_path / "auth.log"
    cli_state = ["--state-dir", str(state)]
    with running_daemon(state, [f"{log}:syslog"], config=config):
        append_lines(log, [_failed("root"), _failed("admin")])
        ticket = wait_until(lambda: _one_ticket_with(state, 2))
        incident_id = ticket["id"]
        assert len(_tickets(state)) == 1, "one ticket per incident key, updated in place"
        assert ticket["users"] == ["root", "admin"]
        assert ticket["host"] == "bastion"

        listing = run_cli("incidents", "list", *cli_state)
        assert listing.returncode == 0, listing.stderr
        assert incident_id in listing.stdout
        assert "open" in listing.stdout

        acked = run_cli("incidents", "ack", incident_id, "--note", "looking", *cli_state)
        assert acked.returncode == 0, acked.stderr
        append_lines(log, [_failed("root")])
        ticket = wait_until(lambda: _one_ticket_with(state, 3))
        assert ticket["status"] == "acknowledged", "the daemon kept the ack made by the CLI"
        assert ticket["status_history"][0]["note"] == "looking"

        closed = run_cli("incidents", "close", incident_id, *cli_state)
        assert closed.returncode == 0, closed.stderr
        append_lines(log, [_failed("oracle")])
        wait_until(lambda: len(_tickets(state)) == 2)
        tickets = _tickets(state)
        assert tickets[incident_id]["status"] == "closed"
        assert tickets[incident_id]["count"] == 3
        follow_up = next(t for t in tickets.values() if t["id"] != incident_id)
        assert follow_up["previous_id"] == incident_id
        assert follow_up["status"] == "open"
        assert incident_id in follow_up["description"]

    # After a restart the daemon takes its incidents back from the tickets.
    with running_daemon(state, [f"{log}:syslog"], config=config):
        append_lines(log, [_failed("oracle")])
        wait_until(lambda: _tickets(state)[follow_up["id"]]["count"] == 2)
        assert len(_tickets(state)) == 2
        assert _tickets(state)[incident_id]["status"] == "closed"

    statuses = [r["irwatchd"]["status"] for r in audit_actions(state, "incident_ack")]
    assert statuses == ["acknowledged"]
    assert len(audit_actions(state, "incident_close")) == 1
    verify = run_cli("audit", "verify", *cli_state)
    assert verify.returncode == 0, "CLI and daemon records form one chain: " + verify.stderr


def test_ticket_maps_to_thehive(tmp_path: Path) -> None:
    config = _config(tmp_path)
    state, log = tmp_path / "state", tmp_path / "auth.log"
    with running_daemon(state, [f"{log}:syslog"], config=config):
        append_lines(log, [_failed("root"), _failed("deploy")])
        ticket = wait_until(lambda: _one_ticket_with(state, 2))

    shown = run_cli("incidents", "show", ticket["id"], "--state-dir", str(state))
    assert shown.returncode == 0, shown.stderr
    hive = json.loads(shown.stdout)["thehive"]
    assert hive["title"] == ticket["title"]
    assert hive["description"] == ticket["description"]
    assert hive["severity"] == 1, "low maps to TheHive severity 1"
    assert hive["type"] == "irwatchd"
    assert hive["source"] == "irwatchd"
    assert hive["sourceRef"] == ticket["id"]
    assert isinstance(hive["date"], int)
    assert hive["date"] > 1_000_000_000_000, "TheHive dates are epoch milliseconds"
    assert "category:failed_login" in hive["tags"]
    assert any(tag.startswith("rule:") for tag in hive["tags"])
    observables = {(item["dataType"], item["data"]) for item in hive["observables"]}
    assert observables == {("ip", SOURCE), ("other", "root"), ("other", "deploy")}


def test_incidents_cli_unknown_id(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "alerts" / "tickets").mkdir(parents=True)
    missing = run_cli("incidents", "ack", "inc-0000000000000000", "--state-dir", str(state))
    assert missing.returncode == 66
    assert "inc-0000000000000000" in missing.stderr
    invalid = run_cli("incidents", "show", "../../etc/passwd", "--state-dir", str(state))
    assert invalid.returncode == 66
    assert "not an incident id" in invalid.stderr


def test_list_escapes_control_characters(tmp_path: Path) -> None:
    tickets = tmp_path / "state" / "alerts" / "tickets"
    tickets.mkdir(parents=True)
    ticket = {"id": "inc-00000000000000bb", "status": "open", "severity": "low",
              "category": "failed_login", "source_ip": SOURCE, "host": "evil\x1b[2J\x07",
              "count": 1, "last_seen": "2026-01-01T00:00:00Z"}  # fmt: skip
    (tickets / "inc-00000000000000bb.json").write_text(json.dumps(ticket))
    listing = run_cli("incidents", "list", "--state-dir", str(tmp_path / "state"))
    assert listing.returncode == 0, listing.stderr
    assert "\x1b" not in listing.stdout
    assert "host=evil\\x1b[2J\\x07" in listing.stdout


def _finding(offset: int) -> Finding:
    record = LogRecord(raw=_failed("root"), view=_failed("root"), source_type="syslog",
                       path="/var/log/auth.log", offset=offset, host="bastion")  # fmt: skip
    return Finding(rule_id="sshd-failed-auth", category="failed_login", severity="low",
                   record=record, source_ip=SOURCE, user="root")  # fmt: skip


def test_close_during_pending_update(tmp_path: Path) -> None:
    config = validate_config({"policy": {"low": ["audit", "ticket"]}, "correlation": []})
    paths = StatePaths(tmp_path / "state")
    paths.create()
    audit = AuditLog(paths.audit_log)
    responder = Responder(LoadedConfig(config, None), paths, audit)
    responder.handle(_finding(0))
    responder.flush()
    responder.handle(_finding(100))
    responder.flush()
    (first,) = _tickets(paths.root).values()
    assert first["count"] == 1, "the second update waits for the write interval"

    TicketStore(paths.tickets).set_status(first["id"], "closed", None, "analyst")
    responder.tick()
    responder.close()
    responder.handle(_finding(200))
    responder.close()
    audit.close()

    tickets = _tickets(paths.root)
    assert tickets[first["id"]]["status"] == "closed", "the pending write kept the close"
    assert tickets[first["id"]]["count"] == 2
    (follow_up,) = [t for t in tickets.values() if t["id"] != first["id"]]
    assert follow_up["previous_id"] == first["id"]
    assert follow_up["count"] == 1


def test_ack_taken_once_per_poll(tmp_path: Path) -> None:
    config = validate_config({"policy": {"low": ["audit", "ticket"]}, "correlation": []})
    paths = StatePaths(tmp_path / "state")
    paths.create()
    audit = AuditLog(paths.audit_log)
    responder = Responder(LoadedConfig(config, None), paths, audit)
    try:
        responder.handle(_finding(0))
        responder.flush()
        (ticket,) = _tickets(paths.root).values()
        incident = responder.incidents.get(("failed_login", SOURCE, "bastion"))
        assert incident is not None

        responder.handle(_finding(100))
        TicketStore(paths.tickets).set_status(ticket["id"], "acknowledged", None, "analyst")
        responder.handle(_finding(200))
        assert incident.status == "open", "the ticket was already read in this poll"

        responder.flush()
        responder.handle(_finding(300))
        assert incident.status == "acknowledged", "the next poll takes the ack"
    finally:
        responder.close()
        audit.close()

    saved = _tickets(paths.root)[ticket["id"]]
    assert saved["status"] == "acknowledged"
    assert saved["count"] == 4


def test_ack_of_closed_incident_needs_reopen(tmp_path: Path) -> None:
    state = tmp_path / "state"
    tickets = state / "alerts" / "tickets"
    tickets.mkdir(parents=True)
    incident_id = "inc-00000000000000cc"
    path = tickets / f"{incident_id}.json"
    path.write_text(json.dumps({"id": incident_id, "status": "closed"}))
    cli_state = ["--state-dir", str(state)]

    rejected = run_cli("incidents", "ack", incident_id, *cli_state)
    assert rejected.returncode == 65
    assert f"incident {incident_id} is closed; pass --reopen" in rejected.stderr
    assert json.loads(path.read_text())["status"] == "closed"
    assert audit_actions(state, "incident_ack") == []

    reopened = run_cli("incidents", "ack", incident_id, "--reopen", *cli_state)
    assert reopened.returncode == 0, reopened.stderr
    assert json.loads(path.read_text())["status"] == "acknowledged"


def test_show_of_damaged_ticket_exits_65(tmp_path: Path) -> None:
    tickets = tmp_path / "state" / "alerts" / "tickets"
    tickets.mkdir(parents=True)
    (tickets / "inc-00000000000000dd.json").write_text("[1, 2]")
    result = run_cli(
        "incidents", "show", "inc-00000000000000dd", "--state-dir", str(tmp_path / "state")
    )
    assert result.returncode == 65
    assert "is damaged: expected a JSON object, found list" in result.stderr


def test_write_moves_damaged_ticket_aside(tmp_path: Path) -> None:
    moment = datetime.now(UTC)
    incident = Incident(
        id="inc-00000000000000ee",
        category="brute_force",
        source_ip=SOURCE,
        host=None,
        first_seen=moment,
        last_seen=moment,
        severity="low",
    )
    store = TicketStore(tmp_path / "tickets")
    store.directory.mkdir()
    path = store.path_for(incident.id)
    path.write_text('"not an object"')
    assert store.status_changed_on_disk(incident) is None

    store.write(incident)
    (moved,) = store.directory.glob(f"{path.name}.damaged-*")
    assert moved.read_text() == '"not an object"'
    assert json.loads(path.read_text())["id"] == incident.id


def test_brute_force_ticket_has_every_failure(tmp_path: Path) -> None:
    config = validate_config(
        {
            "policy": {"low": ["audit"], "high": ["audit", "ticket"]},
            "correlation": [
                {"name": "brute-force", "categories": ["failed_login"], "threshold": 5,
                 "window_seconds": 600, "category": "brute_force", "severity": "high"}
            ],
        }
    )  # fmt: skip
    paths = StatePaths(tmp_path / "state")
    paths.create()
    audit = AuditLog(paths.audit_log)
    responder = Responder(LoadedConfig(config, None), paths, audit)
    for offset in range(0, 600, 100):
        responder.handle(_finding(offset))
    responder.close()
    audit.close()

    (ticket,) = _tickets(paths.root).values()
    offsets = [item["offset"] for item in ticket["evidence"]]

    assert ticket["category"] == "brute_force"
    # The sixth failure goes to the failed_login incident only: the window fired once.
    assert offsets == [0, 100, 200, 300, 400], "the five failures that fired it"
