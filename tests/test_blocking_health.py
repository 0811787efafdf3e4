"""`Responder.blocking_health`: the back-end's state as status.json reports it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from irwatchd.audit.log import AuditLog
from irwatchd.config import load_config
from irwatchd.errors import ConfigError
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
