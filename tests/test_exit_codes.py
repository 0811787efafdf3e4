"""Each documented sysexits code, produced by a real command in the situation it names."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers import (
    ROOT,
    audit_actions,
    irwatchd_command,
    run_cli,
    start_daemon,
    wait_until,
    write_service_config,
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_service_config(tmp_path / "etc")


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "auth.log"
    path.touch()
    return path


def test_exit_0_version() -> None:
    assert run_cli("version").returncode == 0


@pytest.mark.parametrize(
    "arguments", [(), ("run", "--no-such-option"), ("no-such-command",), ("reload", "--timeout")]
)
def test_exit_64_usage(arguments: tuple[str, ...]) -> None:
    assert run_cli(*arguments).returncode == 64


def test_exit_65_data_error(tmp_path: Path, config: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"line": "ok"}\nnot json\n')

    result = run_cli("eval", "-c", str(config), str(corpus))

    assert result.returncode == 65
    assert f"{corpus}:2: invalid JSON" in result.stderr


def test_exit_66_no_input(tmp_path: Path, config: Path) -> None:
    result = run_cli("eval", "-c", str(config), str(tmp_path / "missing.jsonl"))

    assert result.returncode == 66
    assert "missing.jsonl" in result.stderr


@pytest.mark.parametrize("command", ["reload", "status"])
def test_exit_69_not_running(tmp_path: Path, command: str) -> None:
    result = run_cli(command, "--state-dir", str(tmp_path / "state"))

    assert result.returncode == 69
    if command == "reload":
        assert "irwatchd is not running" in result.stderr


def test_exit_73_state_dir_not_creatable(tmp_path: Path, config: Path, log_file: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    result = run_cli(
        "run", "-c", str(config), "--state-dir", str(blocker / "state"),
        "--watch", f"{log_file}:syslog",
    )  # fmt: skip

    assert result.returncode == 73
    assert "cannot create the state directory" in result.stderr
    assert str(blocker / "state") in result.stderr


def test_exit_75_second_instance(tmp_path: Path, config: Path, log_file: Path) -> None:
    daemon = start_daemon(tmp_path / "state", [f"{log_file}:syslog"], config=config)
    try:
        result = run_cli(
            "run", "-c", str(config), "--state-dir", str(daemon.state_dir),
            "--watch", f"{log_file}:syslog",
        )  # fmt: skip
        still_running = daemon.process.poll() is None
    finally:
        assert daemon.stop() == 0

    assert result.returncode == 75
    assert f"PID {daemon.process.pid}" in result.stderr
    assert str(daemon.state_dir) in result.stderr
    assert still_running


def test_exit_77_no_permission(tmp_path: Path, config: Path, log_file: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    prefix: list[str] = []
    if os.geteuid() == 0:
        # Root passes every permission check; without these two capabilities it does not.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is needed to drop root's DAC capabilities")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]
    command = irwatchd_command(
        "run", "-c", str(config), "--state-dir", str(locked / "state"),
        "--watch", f"{log_file}:syslog",
    )  # fmt: skip

    result = subprocess.run(
        [*prefix, *command], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 77, result.stderr
    assert "permission denied" in result.stderr.lower()
    assert str(locked / "state") in result.stderr


@pytest.mark.parametrize("command", ["check", "run"])
def test_exit_78_config_error(tmp_path: Path, log_file: Path, command: str) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("poll_interval_seconds: fast\n")
    arguments = ["-c", str(config)]
    if command == "run":
        arguments += ["--state-dir", str(tmp_path / "state"), "--watch", f"{log_file}:syslog"]

    result = run_cli(command, *arguments)

    assert result.returncode == 78
    assert f"{config}:1: poll_interval_seconds:" in result.stderr


def test_exit_75_reload_without_outcome(tmp_path: Path, config: Path, log_file: Path) -> None:
    daemon = start_daemon(tmp_path / "state", [f"{log_file}:syslog"], config=config)
    try:
        daemon.signal(signal.SIGSTOP)
        result = run_cli("reload", "--state-dir", str(daemon.state_dir), "--timeout", "1")
        daemon.signal(signal.SIGCONT)
        wait_until(lambda: audit_actions(daemon.state_dir, "reload"))
    finally:
        daemon.signal(signal.SIGCONT)
        assert daemon.stop() == 0

    assert result.returncode == 75
    assert "reported no outcome within 1 s" in result.stderr
