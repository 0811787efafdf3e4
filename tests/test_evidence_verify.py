"""Forensic copies: the byte range of the evidence, its manifest, and `irwatchd evidence verify`."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from irwatchd.config import Forensics
from irwatchd.correlation.incidents import Incident
from irwatchd.response.forensics import save_evidence
from tests.helpers import ROOT, append_lines, audit_actions, run_cli, running_daemon, wait_until

BENIGN = (
    "Dec 10 06:55:40 host sshd[24100]: Accepted publickey for deploy from 192.0.2.5 port 1 ssh2"
)
ATTACK = "Dec 10 06:55:48 host sshd[24200]: Failed password for root from 203.0.113.60 port 22 ssh2"


def test_daemon_copies_segment_and_verify_detects_edit(tmp_path: Path) -> None:
    config = tmp_path / "irwatchd.yaml"
    config.write_text(
        f'rules:\n  files: ["{ROOT}/etc/rules.d/*.yaml"]\npolicy:\n  low: [audit, forensics]\n'
    )
    state, log = tmp_path / "state", tmp_path / "auth.log"
    log.write_text("")
    with running_daemon(state, [f"{log}:syslog"], config=config):
        append_lines(log, [BENIGN] * 3 + [ATTACK] + [BENIGN])
        record = wait_until(lambda: audit_actions(state, "forensics"))[0]
    assert record["event"]["outcome"] == "success"
    manifest_path = Path(record["irwatchd"]["manifest_path"])
    manifest = json.loads(manifest_path.read_text())
    by_name = {entry["name"]: entry for entry in manifest["files"]}
    assert set(by_name) == {"evidence.log", "source-1.log"}

    source = by_name["source-1.log"]
    attack_offset = (len(BENIGN) + 1) * 3
    assert source["source_path"] == str(log)
    assert source["start_offset"] == 0, "the default 4096 context bytes reach the file start"
    assert source["end_offset"] == log.stat().st_size
    assert source["inode"] == log.stat().st_ino
    copied = manifest_path.parent / "source-1.log"
    assert copied.read_bytes() == log.read_bytes()[source["start_offset"] : source["end_offset"]]
    assert ATTACK.encode() in copied.read_bytes()[attack_offset - source["start_offset"] :]
    for entry in manifest["files"]:
        path = manifest_path.parent / entry["name"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        assert path.stat().st_mode & 0o222 == 0, f"{path} is read-only"
        assert entry["copied_at"].endswith("Z")

    intact = run_cli("evidence", "verify", "--state-dir", str(state))
    assert intact.returncode == 0, intact.stderr
    assert "2 file(s)" in intact.stdout

    os.chmod(copied, 0o644)
    with copied.open("ab") as handle:
        handle.write(b"forged line\n")
    modified = run_cli("evidence", "verify", "--state-dir", str(state))
    assert modified.returncode == 65
    assert str(copied) in modified.stderr
    assert "modified" in modified.stderr


def _incident(log: Path, offsets: list[int]) -> Incident:
    moment = datetime.now(UTC)
    evidence: list[dict[str, object]] = [
        {"path": str(log), "offset": offset, "line": "x"} for offset in offsets
    ]
    return Incident(
        id="inc-00000000000000aa",
        category="sqli",
        source_ip="192.0.2.1",
        host=None,
        first_seen=moment,
        last_seen=moment,
        severity="critical",
        evidence=evidence,
    )


def test_segment_without_context_is_exact(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    lines = [f"line {number}\n".encode() for number in range(10)]
    log.write_bytes(b"".join(lines))
    start = sum(len(line) for line in lines[:4])
    last = sum(len(line) for line in lines[:6])
    manifest_path = save_evidence(
        tmp_path / "forensics", _incident(log, [start, last]), Forensics(context_bytes=0)
    )
    copied = (manifest_path.parent / "source-1.log").read_bytes()
    assert copied == b"".join(lines[4:7])


def test_file_scope_copies_whole_file(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"a\n" * 1000)
    manifest_path = save_evidence(
        tmp_path / "forensics", _incident(log, [10]), Forensics(scope="file")
    )
    manifest = json.loads(manifest_path.read_text())
    assert manifest["scope"] == "file"
    assert (manifest_path.parent / "source-1.log").read_bytes() == log.read_bytes()


def test_verify_reports_missing_file(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"a\n")
    manifest_path = save_evidence(tmp_path / "forensics", _incident(log, [0]))
    os.chmod(manifest_path.parent, 0o755)
    (manifest_path.parent / "evidence.log").unlink()
    result = run_cli("evidence", "verify", str(tmp_path / "forensics"))
    assert result.returncode == 65
    assert "evidence.log is missing" in result.stderr


def test_verify_reports_damaged_manifest(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"a\n")
    manifest_path = save_evidence(tmp_path / "forensics", _incident(log, [0]))
    os.chmod(manifest_path.parent, 0o755)
    os.chmod(manifest_path, 0o644)
    cases = {
        "{bad": "invalid JSON",
        "": "invalid JSON",
        '{"files": [1]}': "lacks a `name` or `sha256`",
        "[]": "not a forensic manifest",
    }
    for content, reason in cases.items():
        manifest_path.write_text(content)
        result = run_cli("evidence", "verify", str(tmp_path / "forensics"))
        assert result.returncode == 65, (content, result.stderr)
        assert f"{manifest_path} is damaged" in result.stderr
        assert reason in result.stderr
        assert "Traceback" not in result.stderr
