"""Daemon start and stop: a warning when nothing is watched, rejected `--watch` values, and a
second stop signal during shutdown.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from irwatchd.daemon.settings import parse_watch_option
from irwatchd.errors import ConfigError
from tests.helpers import (
    append_lines,
    log_events,
    run_cli,
    ssh_failure,
    start_daemon,
    wait_until,
    write_service_config,
)


def test_no_files_watched_warns(tmp_path: Path) -> None:
    state = tmp_path / "state"
    missing = tmp_path / "logs" / "auth.log"
    config = write_service_config(tmp_path)
    daemon = start_daemon(state, [f"{missing}:syslog"], config=config)
    try:
        (warning,) = log_events(daemon, "no_files_watched")
        assert warning["level"] == "warning"
        assert warning["paths"] == [str(missing)]
        assert "--watch" in warning["hint"]

        result = run_cli("status", "--state-dir", str(state), "--json")
        (status_warning,) = json.loads(result.stdout)["warnings"]
        assert str(missing) in status_warning
        text = run_cli("status", "--state-dir", str(state)).stdout
        assert f"WARNING: no file matches {missing}" in text

        # The warning goes once the file exists and is followed.
        missing.parent.mkdir()
        append_lines(missing, [ssh_failure("192.0.2.5")])

        def warnings() -> list[str]:
            document = json.loads(run_cli("status", "--state-dir", str(state), "--json").stdout)
            return list(document["warnings"])

        wait_until(lambda: warnings() == [])
    finally:
        assert daemon.stop() == 0


def test_files_watched_no_warning(tmp_path: Path) -> None:
    state = tmp_path / "state"
    log = tmp_path / "auth.log"
    log.touch()
    daemon = start_daemon(state, [f"{log}:syslog"], config=write_service_config(tmp_path))
    try:
        assert log_events(daemon, "no_files_watched") == []
    finally:
        assert daemon.stop() == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/var/log/a.log:sylog", "unknown source type 'sylog'"),
        ("/var/log/a.log:access", "unknown source type 'access'"),
        ("", "the path is empty"),
        ("   ", "the path is empty"),
        (":syslog", "the path before the type is empty"),
    ],
)
def test_watch_option_rejects(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_watch_option(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/var/log/a.log:syslog", ("/var/log/a.log", "syslog")),
        ("/var/log/a.log", ("/var/log/a.log", "auto")),
        ("/var/log/*.log:access_log", ("/var/log/*.log", "access_log")),
        ("/srv/x:8080.log", ("/srv/x:8080.log", "auto")),
    ],
)
def test_watch_option_accepts(value: str, expected: tuple[str, str]) -> None:
    assert parse_watch_option(value) == expected


def test_watch_typo_exits_78(tmp_path: Path) -> None:
    config = write_service_config(tmp_path)
    result = run_cli(
        "run", "-c", str(config), "--state-dir", str(tmp_path / "state"),
        "--watch", f"{tmp_path}/a.log:sylog",
    )  # fmt: skip
    assert result.returncode == 78
    assert "unknown source type 'sylog'" in result.stderr
    assert "syslog, access_log, error_log, json, auto" in result.stderr
    assert not (tmp_path / "state" / "audit.jsonl").exists()


def test_watch_empty_exits_78(tmp_path: Path) -> None:
    config = write_service_config(tmp_path)
    result = run_cli("run", "-c", str(config), "--state-dir", str(tmp_path / "state"),
                     "--watch", "")  # fmt: skip
    assert result.returncode == 78
    assert "the path is empty" in result.stderr


def test_second_signal_during_shutdown_exits_0(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.touch()
    config = write_service_config(tmp_path)
    for attempt in range(3):
        state = tmp_path / f"state{attempt}"
        daemon = start_daemon(state, [f"{log}:syslog"], config=config)
        daemon.signal(signal.SIGINT)
        # SIGTERM keeps coming through the whole shutdown, up to the last moment of exit.
        deadline = time.monotonic() + 20
        while daemon.process.poll() is None and time.monotonic() < deadline:
            daemon.signal(signal.SIGTERM)
            try:
                daemon.process.wait(timeout=0.005)
            except subprocess.TimeoutExpired:
                continue
        assert daemon.process.returncode == 0, daemon.log_text()
        assert log_events(daemon, "daemon_stopped")
