"""State files: owners kept when root runs the CLI, and damaged files reported or moved aside."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    append_lines,
    audit_actions,
    finding_originals,
    log_events,
    run_cli,
    running_daemon,
    sshd_failure_line,
    start_daemon,
    wait_until,
    write_daemon_config,
)

TICKET_POLICY = {"policy": {"low": ["audit", "ticket"]}, "correlation": []}


def _cli_state(config: Path, state: Path) -> list[str]:
    return ["-c", str(config), "--state-dir", str(state)]


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """Return a folder under /tmp that an unprivileged user may enter (tmp_path is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="irwatchd-owner-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_root_cli_keeps_daemon_owner(shared_folder: Path) -> None:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv(1) to run the daemon as nobody")
    nobody = pwd.getpwnam("nobody")
    owner = (nobody.pw_uid, nobody.pw_gid)
    config = write_daemon_config(shared_folder, **TICKET_POLICY)
    config.chmod(0o644)
    logs = shared_folder / "logs"
    logs.mkdir(mode=0o755)
    auth = logs / "auth.log"
    auth.write_text("")
    auth.chmod(0o644)
    state = shared_folder / "state"
    state.mkdir()
    os.chown(state, *owner)
    as_nobody = (setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--")
    daemon = start_daemon(state, [f"{auth}:syslog"], config=config, prefix=as_nobody)
    try:
        append_lines(auth, [sshd_failure_line(1)])
        tickets = wait_until(lambda: list((state / "alerts" / "tickets").glob("inc-*.json")))
        incident_id = tickets[0].stem

        # Root runs the CLI on the daemon's state directory.
        cli = _cli_state(config, state)
        added = run_cli("blocks", "add", "192.0.2.44", "--seconds", "600", *cli)
        assert added.returncode == 0, added.stderr
        acked = run_cli("incidents", "ack", incident_id, *cli)
        assert acked.returncode == 0, acked.stderr

        written = [
            state / "blocks.json",
            state / "blocks.history.json",
            state / "blocks.json.lock",
            state / "audit.jsonl",
            state / "audit.jsonl.lock",
            tickets[0],
        ]
        for path in written:
            stat = path.stat()
            assert (stat.st_uid, stat.st_gid) == owner, f"{path} is owned by {stat.st_uid}"

        # The daemon, as nobody, still reads the CLI's files and keeps recording.
        wait_until(
            lambda: any(
                r["irwatchd"].get("applied_by") == "daemon" for r in audit_actions(state, "block")
            )
        )
        append_lines(auth, [sshd_failure_line(2)])
        wait_until(lambda: len(finding_originals(state)) == 2)
        assert daemon.process.poll() is None, daemon.log_text()
        ticket = json.loads(tickets[0].read_text())
        assert ticket["status"] == "acknowledged"
    finally:
        exit_code = daemon.stop()
    assert exit_code == 0, daemon.log_text()
    assert "PermissionError" not in daemon.log_text()


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("blocks.json", "{bad"),
        ("blocks.json", "[]"),
        ("blocks.json", '{"192.0.2.1": {"expires_at": 1e20}}'),
        ("blocks.history.json", "[1, 2]"),
        ("blocks.history.json", '{"192.0.2.1": {"count": "x", "last_at": 0}}'),
    ],
)
def test_blocks_cli_rejects_damaged_file(tmp_path: Path, name: str, content: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / name).write_text(content)
    cli = _cli_state(write_daemon_config(tmp_path), state)
    for command in (["list"], ["add", "192.0.2.9"]):
        result = run_cli("blocks", *command, *cli)
        assert result.returncode == 65, result.stderr
        assert f"{state / name} is damaged" in result.stderr
        assert "move it aside" in result.stderr
        assert "Traceback" not in result.stderr
    assert (state / name).read_text() == content, "the CLI leaves the file for a person"


@pytest.mark.parametrize(
    ("name", "content"),
    [("blocks.json", "{bad"), ("blocks.history.json", "[1, 2]")],
)
def test_daemon_moves_damaged_blocks_aside(tmp_path: Path, name: str, content: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / name).write_text(content)
    config = write_daemon_config(tmp_path, policy={"low": ["audit", "block"]}, correlation=[])
    auth = tmp_path / "auth.log"
    auth.write_text("")
    with running_daemon(state, [f"{auth}:syslog"], config=config) as daemon:
        append_lines(auth, [sshd_failure_line(5)])
        wait_until(lambda: audit_actions(state, "block"))
        assert daemon.process.poll() is None, daemon.log_text()
        (event,) = [
            e for e in log_events(daemon, "state_file_damaged") if e["path"] == str(state / name)
        ]
    moved = list(state.glob(f"{name}.damaged-*"))
    assert len(moved) == 1
    assert moved[0].read_text() == content
    assert event["moved_to"] == str(moved[0])
    (record,) = audit_actions(state, "block")
    assert record["irwatchd"]["block_result"] == "blocked"
    assert "203.0.113.6" in json.loads((state / "blocks.json").read_text())


def test_incidents_list_reports_damaged_ticket(tmp_path: Path) -> None:
    state = tmp_path / "state"
    tickets = state / "alerts" / "tickets"
    tickets.mkdir(parents=True)
    (tickets / "inc-00000000000000aa.json").write_text("")
    (tickets / "inc-00000000000000bb.json").write_text(
        json.dumps({"id": "inc-00000000000000bb", "status": "open", "last_seen": "x"})
    )
    result = run_cli("incidents", "list", "--state-dir", str(state))
    assert result.returncode == 65, result.stderr
    assert "inc-00000000000000bb" in result.stdout, "readable tickets are still listed"
    assert f"{tickets / 'inc-00000000000000aa.json'} is damaged" in result.stderr
    assert "Traceback" not in result.stderr


def test_daemon_skips_damaged_ticket(tmp_path: Path) -> None:
    state = tmp_path / "state"
    tickets = state / "alerts" / "tickets"
    tickets.mkdir(parents=True)
    (tickets / "inc-00000000000000aa.json").write_text("{")
    config = write_daemon_config(tmp_path, **TICKET_POLICY)
    auth = tmp_path / "auth.log"
    auth.write_text("")
    with running_daemon(state, [f"{auth}:syslog"], config=config) as daemon:
        append_lines(auth, [sshd_failure_line(3)])
        wait_until(lambda: audit_actions(state, "ticket"))
        assert daemon.process.poll() is None
        (event,) = log_events(daemon, "ticket_unreadable")
    assert event["path"] == str(tickets / "inc-00000000000000aa.json")


def test_check_rejects_missing_nft(tmp_path: Path) -> None:
    config = write_daemon_config(
        tmp_path, blocking={"backend": "nftables", "nft_path": "/usr/sbin/nft-nope"}
    )
    result = run_cli("check", "-c", str(config))
    assert result.returncode == 78, result.stdout
    assert "blocking.nft_path: /usr/sbin/nft-nope does not exist" in result.stderr
    assert "OK" not in result.stdout


def test_check_rejects_unexecutable_command(tmp_path: Path) -> None:
    program = tmp_path / "ban"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o644)
    config = write_daemon_config(
        tmp_path,
        blocking={
            "backend": "command",
            "command": [str(program), "{address}"],
            "unblock_command": ["/nonexistent/unban", "{address}"],
        },
    )
    result = run_cli("check", "-c", str(config))
    assert result.returncode == 78
    assert f"blocking.command: {program} is not executable" in result.stderr
    assert "blocking.unblock_command: /nonexistent/unban does not exist" in result.stderr


def test_daemon_start_rejects_missing_backend(tmp_path: Path) -> None:
    config = write_daemon_config(
        tmp_path, blocking={"backend": "command", "command": ["/nonexistent/ban", "{address}"]}
    )
    auth = tmp_path / "auth.log"
    auth.write_text("")
    arguments = ["run", "-c", str(config), "--state-dir", str(tmp_path / "state")]
    result = run_cli(*arguments, "--watch", f"{auth}:syslog", timeout=60)
    assert result.returncode == 78, result.stderr
    assert "blocking.command: /nonexistent/ban does not exist" in result.stderr
