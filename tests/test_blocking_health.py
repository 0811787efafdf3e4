"""`Responder.blocking_health`: the back-end's state as status.json reports it."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from irwatchd.audit.log import AuditLog
from irwatchd.config import load_config
from irwatchd.detection.finding import Finding
from irwatchd.errors import ConfigError
from irwatchd.parsing.record import LogRecord
from irwatchd.response.responder import Responder, StatePaths
from tests.helpers import write_daemon_config

TOGGLE = """#!/bin/sh
# Fail while the flag file exists, as a firewall that is down would.
test ! -e "$0.fail"
"""


def _responder(tmp_path: Path, program: Path) -> Responder:
    config = write_daemon_config(
        tmp_path, blocking={"backend": "command", "command": [str(program), "{address}"]}
    )
    paths = StatePaths(tmp_path / "state")
    paths.create()
    return Responder(load_config(config), paths, AuditLog(paths.audit_log))


def test_health_follows_backend_runs(tmp_path: Path) -> None:
    program = tmp_path / "ban"
    program.write_text(TOGGLE)
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    responder = _responder(tmp_path, program)
    try:
        assert responder.blocking_health() == {
            "backend": "command",
            "healthy": True,
            "last_error": None,
        }

        (tmp_path / "ban.fail").touch()
        failed = responder.blocks.block("192.0.2.20", reason="test", incident_id=None)
        assert failed.outcome == "failed"
        health = responder.blocking_health()
        assert health["healthy"] is False
        assert f"{program} exited with status 1" in str(health["last_error"])

        (tmp_path / "ban.fail").unlink()
        blocked = responder.blocks.block("192.0.2.21", reason="test", incident_id=None)
        assert blocked.outcome == "blocked"
        assert responder.blocking_health()["healthy"] is True
    finally:
        responder.close()
        responder.audit.close()


def test_live_responder_rejects_missing_program(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"blocking\.command: .*/missing does not exist"):
        _responder(tmp_path, tmp_path / "missing")


def _failure_finding(address: str) -> Finding:
    line = f"Dec 10 06:55:48 bastion sshd[24200]: Failed password for root from {address} port 22"
    record = LogRecord(raw=line, view=line, source_type="syslog", path="/var/log/auth.log",
                       offset=0, host="bastion")  # fmt: skip
    return Finding(rule_id="sshd-failed-auth", category="failed_login", severity="low",
                   record=record, source_ip=address, user="root")  # fmt: skip


def _block_outcomes(responder: Responder) -> list[str]:
    path = responder.paths.audit_log
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [r["event"]["outcome"] for r in records if r["event"]["action"] == "block"]


def test_failed_block_retried_until_applied(tmp_path: Path) -> None:
    program = tmp_path / "ban"
    program.write_text(TOGGLE)
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "ban.fail").touch()
    config = write_daemon_config(
        tmp_path,
        policy={"low": ["audit", "block"]},
        blocking={"backend": "command", "command": [str(program), "{address}"],
                  "retry_seconds": 0.2},
    )  # fmt: skip
    paths = StatePaths(tmp_path / "state")
    paths.create()
    responder = Responder(load_config(config), paths, AuditLog(paths.audit_log))
    try:
        responder.handle(_failure_finding("192.0.2.30"))
        responder.flush()
        after_failure = _block_outcomes(responder)
        # The firewall is still down at the first retry: no second failure record.
        time.sleep(0.3)
        responder.tick()
        still_down = _block_outcomes(responder)
        (tmp_path / "ban.fail").unlink()
        time.sleep(0.3)
        responder.tick()
        after_retry = _block_outcomes(responder)
        time.sleep(0.3)
        responder.tick()
        settled = _block_outcomes(responder)
    finally:
        responder.close()
        responder.audit.close()

    assert after_failure == ["failure"]
    assert still_down == ["failure"]
    assert after_retry == ["failure", "success"]
    assert settled == after_retry, "a block that took is not tried again"
    assert "192.0.2.30" in responder.blocks.active()
