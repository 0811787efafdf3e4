"""Attribution across the lines of one sshd process, and its limits."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import run_cli

INVALID = "Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 192.0.2.1"
PREAUTH = (
    "Dec 10 06:55:46 LabSZ sshd[24200]: input_userauth_request: invalid user webmaster [preauth]"
)
OTHER_PID = (
    "Dec 10 06:55:47 LabSZ sshd[24999]: input_userauth_request: invalid user admin [preauth]"
)
LATE = "Dec 10 07:30:00 LabSZ sshd[24200]: input_userauth_request: invalid user late [preauth]"
CHECK_PASS = "Jun 14 15:16:02 combo sshd(pam_unix)[19937]: check pass; user unknown"
RHOST = "Jun 14 15:16:02 combo sshd(pam_unix)[19937]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=198.51.100.4 "


def _detect(tmp_path: Path, lines: list[str]) -> dict[int, str | None]:
    log = tmp_path / "auth.log"
    log.write_text("".join(line + "\n" for line in lines))
    result = run_cli("detect", "--source-type", "syslog", str(log))
    assert result.returncode == 0, result.stderr
    return {row["line"]: row["source_ip"] for row in map(json.loads, result.stdout.splitlines())}


def test_same_process_lends_its_address(tmp_path: Path) -> None:
    sources = _detect(tmp_path, [INVALID, PREAUTH, OTHER_PID])
    assert sources[1] == "192.0.2.1"
    assert sources[2] == "192.0.2.1"
    assert sources[3] is None, "another PID never inherits the address"


def test_address_expires_with_log_time(tmp_path: Path) -> None:
    sources = _detect(tmp_path, [INVALID, LATE])
    assert sources[2] is None


def test_later_line_of_process_fills_earlier_one(tmp_path: Path) -> None:
    sources = _detect(tmp_path, [CHECK_PASS, RHOST])
    assert sources[1] == "198.51.100.4"
    assert sources[2] == "198.51.100.4"


def test_daemon_attributes_by_process(tmp_path: Path) -> None:
    from tests.helpers import append_lines, audit_actions, running_daemon, wait_until

    log = tmp_path / "auth.log"
    state = tmp_path / "state"
    with running_daemon(state, [f"{log}:syslog"]):
        append_lines(log, [INVALID, PREAUTH])
        wait_until(lambda: len(audit_actions(state, "finding")) >= 2)
    findings = audit_actions(state, "finding")
    assert [record["source"]["ip"] for record in findings] == ["192.0.2.1", "192.0.2.1"]
