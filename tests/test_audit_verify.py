"""`irwatchd audit verify|tail` on real logs: intact, edited, deleted, swapped, cut, rotated."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

import pytest

from irwatchd.audit.log import AuditLog
from irwatchd.audit.records import action_record
from irwatchd.audit.verify import verify_log
from tests.helpers import ROOT, irwatchd_command, run_cli, wait_until

RECORDS = 6


def _write_log(path: Path, count: int = RECORDS) -> list[bytes]:
    audit = AuditLog(path)
    for number in range(count):
        audit.append(action_record("block", "success", source_ip=f"192.0.2.{number + 1}"))
    audit.close()
    return path.read_bytes().splitlines(keepends=True)


def _verify(path: Path) -> tuple[int, str]:
    result = run_cli("audit", "verify", str(path))
    return result.returncode, result.stdout + result.stderr


def test_verify_intact_log(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    _write_log(log)
    code, output = _verify(log)
    assert code == 0, output
    assert f"{RECORDS} records" in output
    assert f"check that seq {RECORDS} matches the last seq in a copy" in output


def test_verify_edited_line(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    lines = _write_log(log)
    lines[2] = lines[2].replace(b"192.0.2.3", b"192.0.2.9")
    log.write_bytes(b"".join(lines))
    code, output = _verify(log)
    assert code == 65
    assert f"{log}:3:" in output
    assert "changed" in output


def test_verify_edited_line_breaking_json(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    lines = _write_log(log)
    lines[1] = lines[1][:20] + b"\n"
    log.write_bytes(b"".join(lines))
    code, output = _verify(log)
    assert code == 65
    assert f"{log}:2:" in output


def test_verify_deleted_line(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    lines = _write_log(log)
    del lines[3]
    log.write_bytes(b"".join(lines))
    code, output = _verify(log)
    assert code == 65
    assert f"{log}:4:" in output
    assert "seq is 5 but 4 was expected" in output


def test_verify_swapped_lines(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    lines = _write_log(log)
    lines[1], lines[2] = lines[2], lines[1]
    log.write_bytes(b"".join(lines))
    code, output = _verify(log)
    assert code == 65
    assert f"{log}:2:" in output
    assert "reordered" in output


def test_verify_truncated_tail(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    lines = _write_log(log)
    log.write_bytes(b"".join(lines[:-1]) + lines[-1][:40])
    code, output = _verify(log)
    assert code == 65
    assert f"{log}:{RECORDS}:" in output
    assert "truncated" in output


def test_writer_drops_record_cut_by_a_kill(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    lines = _write_log(log)
    log.write_bytes(b"".join(lines[:-1]) + lines[-1][:40])  # a kill -9 in the last write

    audit = AuditLog(log)
    audit.append(action_record("block", "success", source_ip="198.51.100.7"))
    audit.close()

    after_restart = log.read_bytes().splitlines(keepends=True)
    assert after_restart[:-1] == lines[:-1]
    assert b"198.51.100.7" in after_restart[-1]
    report = verify_log(log)
    assert (report.records, report.last_seq) == (RECORDS, RECORDS)


def test_hostile_text_written_as_compact_json(tmp_path: Path) -> None:
    # Every ASCII control character, quotes, a backslash, DEL, line and paragraph separators,
    # a replacement character and text outside the Basic Multilingual Plane.
    hostile = "".join(map(chr, range(0x20))) + '"\\\x7f\u2028\u2029\ufffd é \U0001f600'
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path)
    record = action_record("alert", "failure", details={"original": hostile, "count": 7})
    audit.append(record)
    audit.close()

    line = path.read_bytes().rstrip(b"\n")
    expected = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()

    assert line == expected
    assert json.loads(line)["irwatchd"]["original"] == hostile
    assert verify_log(path).records == 1


def test_verify_missing_log(tmp_path: Path) -> None:
    code, output = _verify(tmp_path / "absent.jsonl")
    assert code == 66
    assert "absent.jsonl" in output


def test_rotation_carries_chain(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    audit = AuditLog(log, max_bytes=4096, keep_files=20)
    for number in range(60):
        audit.append(action_record("block", "success", source_ip=f"198.51.100.{number}"))
    audit.close()
    rotated = sorted(tmp_path.glob("audit.jsonl.*[0-9]"))
    assert len(rotated) >= 2, "the log rotated at least twice"

    report = verify_log(log)
    assert report.records == 60
    assert report.first_seq == 1
    assert report.last_seq == 60
    newest_rotated = tmp_path / "audit.jsonl.1"
    first_of_live = json.loads(log.read_bytes().splitlines()[0])
    assert (
        first_of_live["irwatchd"]["audit"]["seq"]
        == int(json.loads(newest_rotated.read_bytes().splitlines()[-1])["irwatchd"]["audit"]["seq"])
        + 1
    )

    result = run_cli("audit", "verify", "--state-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"{len(rotated) + 1} file(s)" in result.stdout

    # Reopening after a rotation continues from the rotated file's last record.
    again = AuditLog(log, max_bytes=4096, keep_files=20)
    again.append(action_record("stop", "success"))
    again.close()
    assert verify_log(log).last_seq == 61

    older = tmp_path / "audit.jsonl.2"
    lines = older.read_bytes().splitlines(keepends=True)
    lines[0] = lines[0].replace(b"198.51.100", b"203.0.113")
    older.write_bytes(b"".join(lines))
    broken = run_cli("audit", "verify", "--state-dir", str(tmp_path))
    assert broken.returncode == 65
    assert f"{older}:1:" in broken.stderr


def test_two_writers_keep_one_chain(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    daemon_side = AuditLog(log)
    daemon_side.append(action_record("start", "success"))
    cli_side = AuditLog(log)
    cli_side.append(action_record("incident_ack", "success"))
    cli_side.close()
    daemon_side.append(action_record("stop", "success"))
    daemon_side.close()
    assert verify_log(log).records == 3


@pytest.mark.parametrize("as_json", [False, True])
def test_tail_prints_last_records(tmp_path: Path, as_json: bool) -> None:
    log = tmp_path / "audit.jsonl"
    _write_log(log)
    result = run_cli("audit", "tail", "-n", "2", *(["--json"] if as_json else []), str(log))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    if as_json:
        assert json.loads(lines[-1])["source"]["ip"] == f"192.0.2.{RECORDS}"
    else:
        assert f"#{RECORDS}" in lines[-1]
        assert f"src=192.0.2.{RECORDS}" in lines[-1]
        assert "\033[" not in lines[-1], "no colour when stdout is not a terminal"


def test_tail_follow_across_rotation(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    audit = AuditLog(log, max_bytes=4096, keep_files=5)
    audit.append(action_record("start", "success"))
    output = tmp_path / "tail.out"
    with output.open("wb") as sink:
        follower = subprocess.Popen(
            irwatchd_command("audit", "tail", "-f", "-n", "1", "--json", str(log)),
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.DEVNULL,
        )
    try:
        wait_until(lambda: output.read_bytes().count(b"\n") >= 1)
        for number in range(40):
            audit.append(action_record("block", "success", source_ip=f"203.0.113.{number}"))
        audit.close()
        assert (tmp_path / "audit.jsonl.1").exists(), "the log rotated while followed"
        wait_until(lambda: output.read_bytes().count(b"\n") >= 41, timeout=20)
    finally:
        follower.terminate()
        follower.wait(timeout=10)
    seqs = [
        json.loads(line)["irwatchd"]["audit"]["seq"] for line in output.read_bytes().splitlines()
    ]
    assert seqs == list(range(1, 42)), "every record once, in order, across the rotation"


def test_verify_removed_head_without_rotation(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    lines = _write_log(log)
    log.write_bytes(b"".join(lines[2:]))
    result = run_cli("audit", "verify", "--state-dir", str(tmp_path))
    assert result.returncode == 65
    assert f"{log}:1:" in result.stderr
    assert "starts at seq 3" in result.stderr


def test_tail_colours_on_terminal(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    _write_log(log, count=1)
    controller, terminal = pty.openpty()
    try:
        completed = subprocess.run(
            irwatchd_command("audit", "tail", str(log)),
            cwd=ROOT,
            stdout=terminal,
            stderr=subprocess.PIPE,
            env={key: value for key, value in os.environ.items() if key != "NO_COLOR"},
            timeout=60,
            check=False,
        )
        output = os.read(controller, 65536)
    finally:
        os.close(controller)
        os.close(terminal)
    assert completed.returncode == 0, completed.stderr
    assert output.startswith(b"\x1b[32m"), "a successful action is green on a terminal"
    assert b"src=192.0.2.1" in output
