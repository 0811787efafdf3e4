"""`irwatchd detect` and `irwatchd check`: the contract other tools rely on."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import pytest

from irwatchd.sources.discovery import is_binary
from tests.helpers import irwatchd_command, run_cli

FAILED = "Dec 10 06:55:48 LabSZ sshd[24200]: Failed password for invalid user webmaster from 192.0.2.1 port 38926 ssh2"
ACCEPTED = (
    "Dec 10 06:55:49 LabSZ sshd[24200]: Accepted password for fztu from 192.0.2.1 port 38926 ssh2"
)


def test_detect_prints_one_object_per_finding(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text(f"{ACCEPTED}\n{FAILED}\n")
    result = run_cli("detect", str(log))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 1
    row = rows[0]
    assert set(row) == {"line", "rule", "category", "severity", "source_ip", "user", "time"}
    assert row["line"] == 2
    assert row["category"] == "failed_login"
    assert row["severity"] == "low"
    assert row["source_ip"] == "192.0.2.1"
    assert row["user"] == "webmaster"
    assert row["time"].endswith("-12-10T06:55:48Z")


def test_detect_reads_standard_input() -> None:
    result = run_cli("detect", "--source-type", "syslog", "-", input_text=FAILED + "\n")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["line"] == 1


def test_detect_unreadable_input_exits_66(tmp_path: Path) -> None:
    missing = tmp_path / "missing.log"
    result = run_cli("detect", str(missing))
    assert result.returncode == 66
    assert str(missing) in result.stderr
    result = run_cli("detect", str(tmp_path))
    assert result.returncode == 66
    assert "directory" in result.stderr


def test_detect_survives_hostile_bytes(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_bytes(
        b"\xff\xfe\x00garbage\x00\n" + b"A" * 200_000 + b"\n" + FAILED.encode() + b"\r\n"
    )
    result = run_cli("detect", "--source-type", "syslog", str(log))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["line"] for row in rows] == [3]
    assert rows[0]["source_ip"] == "192.0.2.1"


def test_check_accepts_default_config() -> None:
    result = run_cli("check")
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_check_names_file_line_and_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("state_dir: /tmp/x\nblocking:\n  backend: iptables\n  duration_seconds: -5\n")
    result = run_cli("check", "-c", str(config))
    assert result.returncode == 78
    assert f"{config}:3: blocking.backend:" in result.stderr
    assert "'simulate'" in result.stderr
    assert f"{config}:4: blocking.duration_seconds:" in result.stderr


def test_check_rejects_unknown_key_and_bad_yaml(tmp_path: Path) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text("state_dir: /tmp/x\nstart_at: end\npolcy: {}\n")
    result = run_cli("check", "-c", str(config))
    assert result.returncode == 78
    assert f"{config}:3: polcy: unknown key" in result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("state_dir: [unclosed\n")
    result = run_cli("check", "-c", str(broken))
    assert result.returncode == 78
    assert "invalid YAML" in result.stderr
    assert str(broken) in result.stderr


def test_check_rejects_missing_config(tmp_path: Path) -> None:
    result = run_cli("check", "-c", str(tmp_path / "absent.yaml"))
    assert result.returncode == 78
    assert "file not found" in result.stderr


def test_detect_rejects_compressed_input(tmp_path: Path) -> None:
    import gzip

    log = tmp_path / "auth.log.1.gz"
    with gzip.open(log, "wt") as handle:
        handle.write(FAILED + "\n")
    result = run_cli("detect", str(log))
    assert result.returncode == 65
    assert result.stdout == ""
    assert "zcat" in result.stderr


def test_detect_reports_cut_lines(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    failure = "Dec  1 00:00:0{} host sshd[7]: Failed password for root from 192.0.2.{} port 22 ssh2"
    log.write_text(f"{failure.format(1, 8)}\n{'A' * 70_000}\n{failure.format(2, 9)}\n")

    result = run_cli("detect", "--jobs", "1", str(log))

    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    assert "1 line(s) of" in result.stderr
    assert "longer than max_line_bytes (65536)" in result.stderr


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_detect_names_first_cut_line_once(tmp_path: Path, jobs: str) -> None:
    # 17 MiB, so `--jobs 2` splits it into two ranges, with one cut line in each.
    log = tmp_path / "auth.log"
    filler = "Dec  1 00:00:01 host CRON[9]: pam_unix(cron:session): session opened for user root\n"
    half = 8 << 20
    count = half // len(filler)
    log.write_text(
        filler * 1000 + "B" * 70_000 + "\n" + filler * count + "C" * 70_000 + "\n" + filler * count
    )

    result = run_cli("detect", "--jobs", jobs, str(log))

    assert result.returncode == 0, result.stderr
    assert result.stderr.count("irwatchd detect:") == 1
    assert "2 line(s) of" in result.stderr
    assert "the first at line 1001;" in result.stderr


def test_detect_quiet_without_cut_lines(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("Dec  1 00:00:01 host sshd[7]: Accepted publickey for alice from 192.0.2.8\n")

    result = run_cli("detect", "--jobs", "1", str(log))

    assert result.returncode == 0
    assert result.stderr == ""


def test_detect_reads_log_after_nul_run(tmp_path: Path) -> None:
    # Blocks a crash left unwritten read back as NUL bytes at the start of the log.
    log = tmp_path / "auth.log"
    log.write_bytes(b"\0" * 6000 + b"\n" + (FAILED + "\n").encode() * 3)

    result = run_cli("detect", str(log))

    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["line"] for line in result.stdout.splitlines()] == [2, 3, 4]


def test_is_binary_keeps_magic_and_control_bytes(tmp_path: Path) -> None:
    compressed = tmp_path / "auth.log.1.gz"
    compressed.write_bytes(gzip.compress(b"x" * 1000))
    noise = tmp_path / "data.bin"
    noise.write_bytes(bytes(range(1, 32)) * 100)
    padded = tmp_path / "padded.log"
    padded.write_bytes(b"\0" * 4096)

    assert is_binary(str(compressed))
    assert is_binary(str(noise))
    assert not is_binary(str(padded))


def test_detect_rejects_compressed_standard_input() -> None:
    data = gzip.compress((FAILED + "\n").encode())

    result = subprocess.run(
        irwatchd_command("detect", "-"), input=data, capture_output=True, timeout=60, check=False
    )

    assert result.returncode == 65
    assert result.stdout == b""
    assert b"zcat" in result.stderr


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_detect_stops_quietly_when_output_closes(tmp_path: Path, jobs: str) -> None:
    # 17 MiB of failures print far more than a pipe holds, so the writes meet a closed reader.
    log = tmp_path / "auth.log"
    log.write_text((FAILED + "\n") * ((17 << 20) // (len(FAILED) + 1)))

    with subprocess.Popen(
        [*irwatchd_command(), "detect", "--jobs", jobs, str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()
        errors = process.stderr.read()
        status = process.wait(timeout=120)

    assert json.loads(first)["line"] == 1
    assert status == 0
    assert errors == b""
