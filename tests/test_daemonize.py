"""`irwatchd run --daemonize`: detaching with python-daemon where there is no systemd."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.helpers import append_lines, audit_actions, run_cli, wait_until

FAILED = "Dec 10 06:55:48 LabSZ sshd[24200]: Failed password for root from 198.51.100.7 port 4 ssh2"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_daemonize_detaches_and_keeps_detecting(tmp_path: Path) -> None:
    state = tmp_path / "state"
    log = tmp_path / "auth.log"
    result = run_cli("run", "--daemonize", "--state-dir", str(state), "--watch", f"{log}:syslog")
    assert result.returncode == 0, result.stderr
    pid_file = state / "irwatchd.pid"
    pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text().strip()))
    try:
        assert pid != os.getpid()
        wait_until(lambda: audit_actions(state, "start"))
        append_lines(log, [FAILED])
        finding = wait_until(lambda: audit_actions(state, "finding"))[0]
        assert finding["source"]["ip"] == "198.51.100.7"
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not _pid_alive(pid))
    assert audit_actions(state, "stop")
