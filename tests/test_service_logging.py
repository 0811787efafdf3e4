"""The daemon's own log: repeated warnings rate-limited, JSON lines when not on a terminal."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from irwatchd.logs import RepeatLimiter
from tests.helpers import ROOT, start_daemon, write_service_config


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def captured() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as entries:
        yield entries


def _event(event: str = "webhook_failed", level: str = "warning", **fields: Any) -> dict[str, Any]:
    return {"event": event, "level": level, "timestamp": "2026-01-01T00:00:00Z", **fields}


def test_repeat_dropped_within_window(clock: FakeClock) -> None:
    limiter = RepeatLimiter(window_seconds=60, clock=clock)

    first = limiter(None, "warning", _event(url_host="a"))
    clock.now += 10
    with pytest.raises(structlog.DropEvent):
        limiter(None, "warning", _event(url_host="a", timestamp="later"))

    assert first["url_host"] == "a"


def test_different_fields_not_dropped(clock: FakeClock) -> None:
    limiter = RepeatLimiter(window_seconds=60, clock=clock)

    limiter(None, "warning", _event(url_host="a"))
    second = limiter(None, "warning", _event(url_host="b"))
    third = limiter(None, "error", _event(url_host="a", level="error"))

    assert second["url_host"] == "b"
    assert third["level"] == "error"


def test_per_repeat_fields_ignored(clock: FakeClock) -> None:
    limiter = RepeatLimiter(window_seconds=60, clock=clock)

    limiter(None, "warning", _event("line_truncated", path="/x", offset=1))

    with pytest.raises(structlog.DropEvent):
        limiter(None, "warning", _event("line_truncated", path="/x", offset=9000))


def test_info_never_dropped(clock: FakeClock) -> None:
    limiter = RepeatLimiter(window_seconds=60, clock=clock)

    limiter(None, "info", _event("file_followed", level="info", path="/x"))
    again = limiter(None, "info", _event("file_followed", level="info", path="/x"))

    assert again["event"] == "file_followed"


def test_suppressed_count_logged_after_window(
    clock: FakeClock, captured: list[dict[str, Any]]
) -> None:
    limiter = RepeatLimiter(window_seconds=60, clock=clock)
    limiter(None, "warning", _event(url_host="a"))
    for _ in range(3):
        with pytest.raises(structlog.DropEvent):
            limiter(None, "warning", _event(url_host="a"))

    clock.now += 61
    passed = limiter(None, "warning", _event(url_host="a"))

    assert passed["url_host"] == "a"
    assert len(captured) == 1
    assert captured[0]["event"] == "log_repeats_suppressed"
    assert captured[0]["repeated_event"] == "webhook_failed"
    assert captured[0]["suppressed"] == 3


def test_flush_reports_open_windows(clock: FakeClock, captured: list[dict[str, Any]]) -> None:
    limiter = RepeatLimiter(window_seconds=60, clock=clock)
    limiter(None, "error", _event(level="error"))
    with pytest.raises(structlog.DropEvent):
        limiter(None, "error", _event(level="error"))

    limiter.flush()
    limiter.flush()

    assert [entry["suppressed"] for entry in captured] == [1]
    assert captured[0]["repeated_level"] == "error"


def test_tracked_keys_bounded(clock: FakeClock) -> None:
    limiter = RepeatLimiter(window_seconds=60, max_tracked=2, clock=clock)

    for host in ("a", "b", "c"):
        limiter(None, "warning", _event(url_host=host))
    oldest_again = limiter(None, "warning", _event(url_host="a"))

    assert oldest_again["url_host"] == "a"


def test_daemon_logs_json_lines(tmp_path: Path) -> None:
    config = write_service_config(tmp_path / "etc")
    log = tmp_path / "auth.log"
    log.touch()
    daemon = start_daemon(tmp_path / "state", [f"{log}:syslog"], config=config)
    assert daemon.stop() == 0

    lines = daemon.log_text().splitlines()
    not_json = [line for line in lines if not line.startswith("{")]
    assert not_json == []
    entries = [json.loads(line) for line in lines]
    levels = {entry["event"]: entry["level"] for entry in entries}

    assert levels["daemon_started"] == "info"
    assert levels["daemon_stopping"] == "info"
    assert levels["daemon_stopped"] == "info"
    assert all(entry["timestamp"].endswith("Z") for entry in entries)


def test_report_expired_without_event(clock: FakeClock, captured: list[dict[str, Any]]) -> None:
    limiter = RepeatLimiter(window_seconds=60, clock=clock)
    limiter(None, "warning", _event())
    with pytest.raises(structlog.DropEvent):
        limiter(None, "warning", _event())

    limiter.report_expired()
    clock.now += 61
    limiter.report_expired()

    assert [entry["suppressed"] for entry in captured] == [1]


def _run_python(program: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


def test_library_logging_rendered_as_json() -> None:
    program = (
        "import logging, sys\n"
        "from irwatchd.logs import configure_logging\n"
        "configure_logging('info', json_output=True)\n"
        "logging.getLogger('watchdog.observers').warning('inotify limit %d', 8192)\n"
        "logging.getLogger('watchdog.observers').info('not shown')\n"
    )

    result = _run_python(program)
    entries = [json.loads(line) for line in result.stderr.splitlines()]

    assert result.returncode == 0
    assert len(entries) == 1
    assert entries[0]["event"] == "inotify limit 8192"
    assert entries[0]["level"] == "warning"
    assert entries[0]["logger"] == "watchdog.observers"
    assert entries[0]["timestamp"].endswith("Z")


def test_detect_never_imports_structlog(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text(
        "Dec  1 00:00:01 host sshd[7]: Failed password for root from 192.0.2.7 port 22 ssh2\n"
    )
    program = (
        "import sys\n"
        "from irwatchd.cli.main import main\n"
        f"code = main(['detect', '--jobs', '1', {str(log)!r}])\n"
        "sys.stdout.flush()\n"
        "print('structlog' in sys.modules, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )

    result = _run_python(program)

    assert result.returncode == 0
    assert json.loads(result.stdout)["source_ip"] == "192.0.2.7"
    assert result.stderr.strip() == "False"


def test_first_event_uses_configured_level_and_format() -> None:
    program = (
        "from irwatchd import logger\n"
        "logger.configure('warning')\n"
        "log = logger.get_logger('irwatchd.example')\n"
        "log.info('not_shown')\n"
        "log.warning('shown', path='/var/log/x')\n"
    )

    result = _run_python(program)
    entries = [json.loads(line) for line in result.stderr.splitlines()]

    assert result.returncode == 0
    assert [entry["event"] for entry in entries] == ["shown"]
    assert entries[0]["path"] == "/var/log/x"
    assert entries[0]["level"] == "warning"


def test_debug_level_leaves_out_watchdog_events() -> None:
    program = (
        "import logging\n"
        "from irwatchd.logs import configure_logging\n"
        "configure_logging('debug', json_output=True)\n"
        "logging.getLogger('watchdog.observers.inotify').debug('in-event IN_MODIFY')\n"
        "logging.getLogger('watchdog.observers.inotify').warning('inotify limit')\n"
        "logging.getLogger('irwatchd.example').debug('own debug record')\n"
    )

    result = _run_python(program)
    events = [json.loads(line)["event"] for line in result.stderr.splitlines()]

    assert result.returncode == 0
    assert events == ["inotify limit", "own debug record"]
