"""`irwatchd run --daemonize` with relative paths, and the log file of the detached daemon."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from tests.helpers import (
    ROOT,
    append_lines,
    audit_actions,
    irwatchd_command,
    ssh_failure,
    wait_until,
    write_service_config,
)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _last_reload(state: Path) -> Any:
    try:
        document = json.loads((state / "status.json").read_text())
    except (OSError, ValueError):
        return None
    return document.get("last_reload")


def test_daemonize_relative_paths_reload(tmp_path: Path) -> None:
    write_service_config(tmp_path)
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "auth.log"
    log.touch()
    state = tmp_path / "state"
    result = subprocess.run(
        irwatchd_command("run", "-c", "irwatchd.yaml", "--state-dir", "state",
                         "--watch", "logs/auth.log:syslog", "--daemonize"),
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    pid_file = state / "irwatchd.pid"
    pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text().strip()))
    daemon_log = state / "irwatchd.log"
    try:
        wait_until(lambda: "daemon_started" in daemon_log.read_text())
        append_lines(log, [ssh_failure("198.51.100.7")])
        finding = wait_until(lambda: audit_actions(state, "finding"))[0]
        assert finding["source"]["ip"] == "198.51.100.7"

        os.kill(pid, signal.SIGHUP)
        outcome = wait_until(lambda: _last_reload(state))
        assert outcome["result"] == "success", outcome
        assert outcome["config_path"] == str(tmp_path / "irwatchd.yaml")
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not _pid_alive(pid))

    events = [json.loads(line)["event"] for line in daemon_log.read_text().splitlines()]
    assert "daemon_started" in events
    assert "reload_finished" in events
    assert "daemon_stopped" in events
    assert "reload_failed" not in events


def test_daemonize_log_appends(tmp_path: Path) -> None:
    config = write_service_config(tmp_path)
    log = tmp_path / "auth.log"
    log.touch()
    state = tmp_path / "state"
    state.mkdir()
    daemon_log = state / "irwatchd.log"
    daemon_log.write_text('{"event": "earlier_line"}\n')
    result = subprocess.run(
        irwatchd_command("run", "-c", str(config), "--state-dir", str(state),
                         "--watch", f"{log}:syslog", "--daemonize"),
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    pid_file = state / "irwatchd.pid"
    pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text().strip()))
    try:
        wait_until(lambda: "daemon_started" in daemon_log.read_text())
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not _pid_alive(pid))
    lines = daemon_log.read_text().splitlines()
    assert lines[0] == '{"event": "earlier_line"}'
    assert json.loads(lines[-1])["event"] == "daemon_stopped"
