"""`irwatchd status`: the fields of --json while running and after, and the text form."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from irwatchd.daemon.control import STALE_AFTER_SECONDS, DaemonState
from tests.helpers import (
    append_lines,
    run_cli,
    ssh_failure,
    start_daemon,
    sudo_denied,
    wait_until,
    write_service_config,
)


def _status_json(state_dir: Path) -> tuple[int, dict[str, Any]]:
    result = run_cli("status", "--state-dir", str(state_dir), "--json")
    return result.returncode, json.loads(result.stdout)


def _file_row(document: dict[str, Any], path: Path) -> dict[str, Any] | None:
    return next((row for row in document["files"] if row["path"] == str(path)), None)


def test_status_json_while_running(tmp_path: Path) -> None:
    config = write_service_config(tmp_path / "etc")
    log = tmp_path / "logs" / "auth.log"
    log.parent.mkdir()
    log.touch()
    daemon = start_daemon(tmp_path / "state", [f"{log}:syslog"], config=config)
    state = daemon.state_dir
    try:
        append_lines(log, [ssh_failure("198.51.100.7"), sudo_denied("mallory")])
        wait_until(lambda: _status_json(state)[1]["lines_read"] == 2)
        code, document = _status_json(state)
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: _status_json(state)[1]["last_reload"])
        _, reloaded = _status_json(state)
    finally:
        assert daemon.stop() == 0

    assert code == 0
    assert document["running"] is True
    assert document["pid"] == daemon.process.pid
    assert document["stale"] is False
    assert document["status_age_seconds"] < 10
    assert document["config_path"] == str(config)
    assert document["state_dir"] == str(state)
    assert document["watch_mode"] == "inotify"
    assert document["findings"] == 2
    assert document["open_incidents"] == 2
    assert document["active_blocks"] == 0
    assert document["blocking"] == {"backend": "simulate", "healthy": True, "last_error": None}
    assert isinstance(document["lines_per_second"], float | int)
    assert document["queues"]["rotated_files"] == 0
    assert document["queues"]["partial_line_bytes"] == 0
    assert document["last_reload"] is None
    assert document["metrics"] == {"enabled": False, "listen": None, "error": None}
    row = _file_row(document, log)
    assert row is not None
    assert row["offset"] == log.stat().st_size
    assert row["lag_bytes"] == 0
    assert row["source_type"] == "syslog"
    assert reloaded["last_reload"]["result"] == "success"
    assert reloaded["last_reload"]["rules"] == 2
    assert reloaded["reloads"] == 1


def test_status_after_stop(tmp_path: Path) -> None:
    config = write_service_config(tmp_path / "etc")
    log = tmp_path / "auth.log"
    log.touch()
    daemon = start_daemon(tmp_path / "state", [f"{log}:syslog"], "--polling", config=config)
    append_lines(log, [ssh_failure("198.51.100.8")])
    wait_until(lambda: _status_json(daemon.state_dir)[1]["lines_read"] == 1)
    assert daemon.stop() == 0

    code, document = _status_json(daemon.state_dir)

    assert code == 69
    assert document["running"] is False
    assert document["pid"] is None
    assert document["stale"] is False
    assert document["watch_mode"] == "polling"
    assert document["lines_read"] == 1
    assert _file_row(document, log)["offset"] == log.stat().st_size


def test_status_unknown_state_dir(tmp_path: Path) -> None:
    code, document = _status_json(tmp_path / "missing")

    assert code == 69
    assert document["running"] is False
    assert document["pid"] is None
    assert "lines_read" not in document


def test_status_text_form(tmp_path: Path) -> None:
    config = write_service_config(tmp_path / "etc")
    log = tmp_path / "auth.log"
    log.touch()
    daemon = start_daemon(tmp_path / "state", [f"{log}:syslog"], config=config)
    try:
        wait_until(lambda: (daemon.state_dir / "status.json").exists())
        result = run_cli("status", "--state-dir", str(daemon.state_dir))
    finally:
        assert daemon.stop() == 0
    stopped = run_cli("status", "--state-dir", str(daemon.state_dir))

    assert result.returncode == 0
    assert f"irwatchd is running, PID {daemon.process.pid}" in result.stdout
    assert str(log) in result.stdout
    assert "watch mode:   inotify" in result.stdout
    assert "last reload:  none since start" in result.stdout
    assert stopped.returncode == 69
    assert "irwatchd is not running" in stopped.stdout


def test_status_after_kill(tmp_path: Path) -> None:
    config = write_service_config(tmp_path / "etc")
    log = tmp_path / "auth.log"
    log.touch()
    daemon = start_daemon(tmp_path / "state", [f"{log}:syslog"], config=config)
    wait_until(lambda: (daemon.state_dir / "status.json").exists())
    daemon.signal(signal.SIGKILL)
    daemon.process.wait(timeout=20)
    left_behind = json.loads((daemon.state_dir / "status.json").read_text())

    code, document = _status_json(daemon.state_dir)

    assert left_behind["running"] is True
    assert code == 69
    assert document["running"] is False
    assert document["pid"] is None


def test_status_stale_only_when_running(tmp_path: Path) -> None:
    fresh = DaemonState(tmp_path, 4242, {}, 1.0)
    old = DaemonState(tmp_path, 4242, {}, STALE_AFTER_SECONDS + 1)
    never_written = DaemonState(tmp_path, 4242, None, None)
    stopped = DaemonState(tmp_path, None, {}, STALE_AFTER_SECONDS + 100)

    assert not fresh.is_stale
    assert old.is_stale
    assert never_written.is_stale
    assert not stopped.is_stale
