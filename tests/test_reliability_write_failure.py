"""A response write that fails after the finding's audit record: no finding is recorded twice,
and `irwatchd status` shows the failure until writes succeed again.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    append_lines,
    finding_originals,
    run_cli,
    sequence_counts,
    sshd_failure_line,
    start_daemon,
    wait_until,
    write_daemon_config,
)

TICKET_ON_EVERY_SEVERITY = {
    severity: ["audit", "ticket"] for severity in ("low", "medium", "high", "critical")
}


def status_json(state: Path) -> dict[str, Any]:
    result = run_cli("status", "--state-dir", str(state), "--json")
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_failed_ticket_write_records_finding_once(tmp_path: Path) -> None:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv(1) to drop the capability that bypasses file modes")
    logs = tmp_path / "logs"
    logs.mkdir()
    auth = logs / "auth.log"
    auth.touch()
    state = tmp_path / "state"
    config = write_daemon_config(tmp_path, policy=TICKET_ON_EVERY_SEVERITY)
    # Root without CAP_DAC_OVERRIDE obeys file modes like any user.
    without_override = (setpriv, "--bounding-set=-dac_override,-dac_read_search", "--")
    daemon = start_daemon(state, [f"{auth}:syslog"], config=config, prefix=without_override)
    tickets = state / "alerts" / "tickets"
    tickets.chmod(0o555)
    try:
        append_lines(auth, [sshd_failure_line(1)])
        wait_until(lambda: status_json(state).get("degraded"))
        # The second line is read after the first one has been retried at least once.
        append_lines(auth, [sshd_failure_line(2)])
        wait_until(lambda: 2 in sequence_counts(finding_originals(state)))
        assert sequence_counts(finding_originals(state)) == {1: 1, 2: 1}

        status = status_json(state)
        assert status["degraded"] is True
        error = status["last_error"]
        assert error["operation"] == "record_findings"
        assert str(tickets) in error["path"]
        assert error["error"] == "Permission denied"
        assert error["time"].endswith("Z")
        text = run_cli("status", "--state-dir", str(state)).stdout
        assert "WARNING: degraded" in text
        assert "Permission denied" in text
    finally:
        tickets.chmod(0o755)

    append_lines(auth, [sshd_failure_line(3)])
    wait_until(lambda: status_json(state).get("degraded") is False)
    assert sequence_counts(finding_originals(state)) == {1: 1, 2: 1, 3: 1}
    assert list(tickets.glob("*.json"))
    text = run_cli("status", "--state-dir", str(state)).stdout
    assert "WARNING: degraded" not in text
    assert "recovered since" in text
    assert daemon.stop() == 0
