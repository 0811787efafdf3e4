"""The daemon as a subprocess keeps detecting after hostile input: bad bytes, huge lines,
binary files and files it may not read.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import (
    DaemonProcess,
    audit_actions,
    finding_originals,
    log_events,
    run_cli,
    sequence_counts,
    sshd_failure_line,
    start_daemon,
    wait_until,
    write_daemon_config,
)


@pytest.fixture
def auth(tmp_path: Path) -> Path:
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "auth.log"
    path.touch()
    return path


def write_bytes(path: Path, data: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(data)


def follow_with_valid_line(daemon: DaemonProcess, state: Path, auth: Path, hostile: bytes) -> str:
    """Write the hostile bytes and then a valid line; wait until the valid line is detected."""
    valid = sshd_failure_line(2)
    write_bytes(auth, hostile + valid.encode() + b"\n")
    wait_until(lambda: valid in finding_originals(state))
    assert daemon.process.poll() is None, daemon.log_text()
    return valid


def test_invalid_utf8_is_replaced_and_hashed(tmp_path: Path, auth: Path) -> None:
    state = tmp_path / "state"
    daemon = start_daemon(state, [f"{auth}:syslog"], config=write_daemon_config(tmp_path))
    raw = sshd_failure_line(1).encode().replace(b"user1", b"user1\xff\xfe")
    follow_with_valid_line(daemon, state, auth, raw + b"\n")
    assert daemon.stop() == 0

    records = [r for r in audit_actions(state, "finding") if r["rule"]["id"] == "sshd-failed-auth"]
    first, second = records
    assert "user1\ufffd\ufffd" in first["event"]["original"]
    assert first["irwatchd"]["raw_bytes_sha256"] == hashlib.sha256(raw).hexdigest()
    assert "raw_bytes_sha256" not in second["irwatchd"]


def test_nul_bytes_are_kept_in_line(tmp_path: Path, auth: Path) -> None:
    state = tmp_path / "state"
    daemon = start_daemon(state, [f"{auth}:syslog"], config=write_daemon_config(tmp_path))
    raw = sshd_failure_line(1).encode().replace(b"user1", b"user1\0\0")
    valid = follow_with_valid_line(daemon, state, auth, raw + b"\n")
    assert daemon.stop() == 0

    assert finding_originals(state) == [raw.decode(), valid]


def test_oversized_line_is_cut_and_not_merged(tmp_path: Path, auth: Path) -> None:
    state = tmp_path / "state"
    daemon = start_daemon(state, [f"{auth}:syslog"], config=write_daemon_config(tmp_path))
    # 200 KiB without a newline, with a detectable line hidden past the 64 KiB cut.
    hidden = sshd_failure_line(999).encode()
    oversized = b"x" * (100 << 10) + hidden + b"y" * ((100 << 10) - len(hidden))
    follow_with_valid_line(daemon, state, auth, oversized + b"\n")
    assert daemon.stop() == 0

    assert sequence_counts(finding_originals(state)) == {2: 1}
    (truncated,) = log_events(daemon, "line_truncated")
    assert truncated["kept_bytes"] == 65536
    assert truncated["skipped_bytes"] == len(oversized) - 65536


def test_crlf_line_endings_are_stripped(tmp_path: Path, auth: Path) -> None:
    state = tmp_path / "state"
    daemon = start_daemon(state, [f"{auth}:syslog"], config=write_daemon_config(tmp_path))
    line = sshd_failure_line(1)
    follow_with_valid_line(daemon, state, auth, line.encode() + b"\r\n")
    assert daemon.stop() == 0

    assert finding_originals(state)[0] == line


def test_binary_file_in_folder_is_skipped_once(tmp_path: Path, auth: Path) -> None:
    state = tmp_path / "state"
    binary = auth.parent / "core.dump"
    binary.write_bytes(b"\x7fELF" + bytes(range(256)) * 16)
    daemon = start_daemon(state, [f"{auth.parent}:syslog"], config=write_daemon_config(tmp_path))
    follow_with_valid_line(daemon, state, auth, b"")
    write_bytes(binary, bytes(range(256)) * 16)
    follow_with_valid_line(daemon, state, auth, sshd_failure_line(3).encode() + b"\n")
    assert daemon.stop() == 0

    skipped = log_events(daemon, "source_binary_skipped")
    assert [entry["path"] for entry in skipped] == [str(binary)]
    assert sequence_counts(finding_originals(state)) == {2: 2, 3: 1}


def test_unreadable_file_is_reported_and_retried(tmp_path: Path, auth: Path) -> None:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv(1) to drop the capability that bypasses file modes")
    state = tmp_path / "state"
    secure = auth.parent / "secure"
    secure.write_text(sshd_failure_line(1) + "\n")
    secure.chmod(0)
    # Root without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH obeys file modes like any user.
    without_override = (setpriv, "--bounding-set=-dac_override,-dac_read_search", "--")
    daemon = start_daemon(state, [f"{auth.parent}:syslog"], config=write_daemon_config(tmp_path),
                          prefix=without_override)  # fmt: skip
    follow_with_valid_line(daemon, state, auth, b"")
    (warning,) = log_events(daemon, "source_unreadable")
    assert warning["path"] == str(secure)
    assert warning["mode"] == "0o0"
    assert "read permission" in warning["hint"]
    # `status` names the file it cannot read, not a missing file.
    wait_until(lambda: f"WARNING: cannot read {secure}: " in _status_text(state))

    secure.chmod(0o640)
    wait_until(lambda: 1 in sequence_counts(finding_originals(state)))
    wait_until(lambda: "WARNING" not in _status_text(state))
    assert daemon.stop() == 0
    assert sequence_counts(finding_originals(state)) == {1: 1, 2: 1}


def _status_text(state: Path) -> str:
    return run_cli("status", "--state-dir", str(state)).stdout
