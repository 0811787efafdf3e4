"""The daemon's block ingest: offsets and line numbers in the audit log match the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import (
    audit_actions,
    sshd_failure_line,
    start_daemon,
    wait_until,
    write_daemon_config,
)

# Lines no sshd rule matches, of every shape the block reader must handle, between findings.
QUIET = [
    b"Dec  4 10:00:00 host cron[1]: nothing here",
    b"Dec  4 10:00:00 host app[2]: nul \x00 byte",
    b"Dec  4 10:00:00 host app[3]: bad utf-8 \xff",
    b"Dec  4 10:00:00 host app[4]: crlf\r",
    b"",
]


def _mixed(start: int, count: int) -> tuple[bytes, list[str]]:
    """Return lines with a finding every third line, and the findings' texts."""
    lines, findings = [], []
    for seq in range(start, start + count):
        finding = sshd_failure_line(seq)
        findings.append(finding)
        lines += [QUIET[seq % len(QUIET)], finding.encode(), QUIET[(seq + 1) % len(QUIET)]]
    return b"".join(line + b"\n" for line in lines), findings


def _expected(data: bytes, base_offset: int, base_number: int, findings: list[str]) -> list:
    """Return (offset, line number) of each finding's line in `data`."""
    result = []
    offset = base_offset
    for number, line in enumerate(data.split(b"\n")[:-1], start=base_number + 1):
        if line.decode("utf-8", "replace") in findings:
            result.append((offset, number))
        offset += len(line) + 1
    return result


def _positions(state: Path) -> list:
    records = [r for r in audit_actions(state, "finding") if r["rule"]["id"] == "sshd-failed-auth"]
    return [(r["log"]["offset"], r["irwatchd"]["line_number"]) for r in records]


@pytest.mark.parametrize("start_at", ["beginning", "end"])
def test_daemon_positions_match_file(tmp_path: Path, start_at: str) -> None:
    auth = tmp_path / "auth.log"
    before, before_findings = _mixed(0, 5)
    auth.write_bytes(before)
    state = tmp_path / "state"
    config = write_daemon_config(tmp_path, start_at=start_at)
    daemon = start_daemon(state, [f"{auth}:syslog"], config=config)
    appended, appended_findings = _mixed(100, 40)
    with auth.open("ab") as handle:
        handle.write(appended)
    wait_until(lambda: len(_positions(state)) >= (40 if start_at == "end" else 45))
    assert daemon.stop() == 0

    if start_at == "beginning":
        expected = _expected(before + appended, 0, 0, before_findings + appended_findings)
    else:
        # Opened at its end, so the daemon cannot know line numbers: they are recorded as null.
        offsets = _expected(appended, len(before), 0, appended_findings)
        expected = [(offset, None) for offset, _ in offsets]
    assert _positions(state) == expected
