"""systemd notify protocol: the daemon's messages over a socket the test owns, and the parts."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest

from irwatchd.daemon.notify import Notifier, watchdog_seconds
from tests.helpers import NotifySocket, start_daemon, write_service_config

LIFECYCLE = ("READY", "RELOADING", "STOPPING")


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _kinds(messages: list[dict[str, str]]) -> list[str]:
    """Name each message by its lifecycle key or WATCHDOG; STATUS-only messages are left out."""
    kinds = []
    for message in messages:
        for key in (*LIFECYCLE, "WATCHDOG"):
            if key in message:
                kinds.append(key)
                break
    return kinds


def test_daemon_notify_sequence(tmp_path: Path) -> None:
    config = write_service_config(tmp_path / "etc")
    log = tmp_path / "logs" / "auth.log"
    log.parent.mkdir()
    log.touch()
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "200000"}
    daemon = start_daemon(tmp_path / "state", [f"{log}:syslog"], config=config, env=env)
    try:
        notify.wait_for("READY")
        pings_at_ready = _kinds(notify.receive()).count("WATCHDOG")
        notify.wait_for("WATCHDOG", count=pings_at_ready + 3)
        before_reload = _monotonic_usec()
        daemon.signal(signal.SIGHUP)
        notify.wait_for("READY", count=2)
        after_reload = _monotonic_usec()
        pings_after_reload = _kinds(notify.receive()).count("WATCHDOG")
        notify.wait_for("WATCHDOG", count=pings_after_reload + 3)
    finally:
        exit_code = daemon.stop()
    messages = notify.receive()
    notify.close()
    kinds = _kinds(messages)

    assert exit_code == 0
    assert [kind for kind in kinds if kind in LIFECYCLE] == [
        "READY", "RELOADING", "READY", "STOPPING",
    ]  # fmt: skip
    first_ready = kinds.index("READY")
    reloading = kinds.index("RELOADING")
    stopping = kinds.index("STOPPING")
    assert kinds[first_ready:reloading].count("WATCHDOG") >= 3
    assert kinds[reloading:stopping].count("WATCHDOG") >= 3
    assert "WATCHDOG" not in kinds[stopping:]

    reload_message = next(message for message in messages if "RELOADING" in message)
    assert before_reload <= int(reload_message["MONOTONIC_USEC"]) <= after_reload
    ready = next(message for message in messages if "READY" in message)
    assert "files watched" in ready["STATUS"]
    assert "lines/s" in ready["STATUS"]
    assert "open incidents" in ready["STATUS"]
    assert "active blocks" in ready["STATUS"]


def test_daemon_without_watchdog_sends_no_pings(tmp_path: Path) -> None:
    config = write_service_config(tmp_path / "etc")
    log = tmp_path / "auth.log"
    log.touch()
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}
    daemon = start_daemon(tmp_path / "state", [f"{log}:syslog"], config=config, env=env)
    try:
        notify.wait_for("READY")
        # The status refresh every 2 s proves the loop ran for a while without pinging.
        notify.wait_for("STATUS", count=3, timeout=30)
    finally:
        assert daemon.stop() == 0
    kinds = _kinds(notify.receive())
    notify.close()

    assert "WATCHDOG" not in kinds


def test_notifier_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"irwatchd-test-{uuid.uuid4().hex}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + name)
    receiver.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)

    notifier = Notifier()
    notifier.ready("3 files watched")

    assert receiver.recv(4096) == b"READY=1\nSTATUS=3 files watched"
    assert "NOTIFY_SOCKET" not in os.environ
    receiver.close()


def test_notifier_without_socket_is_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()

    notifier.ready("x")
    notifier.watchdog_tick()

    assert notifier.address is None


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "nonsense"}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "{pid}"}, 0.2),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}, None),
    ],
)
def test_watchdog_seconds(environment: dict[str, str], expected: float | None) -> None:
    filled = {name: value.format(pid=os.getpid()) for name, value in environment.items()}

    assert watchdog_seconds(filled) == expected


def test_notifier_wait_shortened_by_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notifier = Notifier()

    assert notifier.wait_seconds(2.0) == 0.5
    assert notifier.wait_seconds(0.1) == 0.1
    assert "WATCHDOG_USEC" not in os.environ


def test_stuck_loop_stops_watchdog(tmp_path: Path) -> None:
    # The main loop takes the block store's flock on every pass (to pick up `irwatchd blocks`
    # changes), so holding that lock here stalls the loop as a hung CLI would.
    config = write_service_config(tmp_path / "etc")
    log = tmp_path / "auth.log"
    log.touch()
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "200000"}
    daemon = start_daemon(tmp_path / "state", [f"{log}:syslog"], config=config, env=env)
    lock_path = daemon.state_dir / "blocks.json.lock"
    try:
        notify.wait_for("WATCHDOG", count=3)
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # One ping may already be on its way; after that the loop waits on the lock.
            time.sleep(0.5)
            stalled_from = _kinds(notify.receive()).count("WATCHDOG")
            time.sleep(1.0)  # five watchdog intervals: the window the check is about
            stalled_to = _kinds(notify.receive()).count("WATCHDOG")
            fcntl.flock(lock, fcntl.LOCK_UN)
        notify.wait_for("WATCHDOG", count=stalled_to + 3)
    finally:
        assert daemon.stop() == 0
        notify.close()

    assert stalled_to == stalled_from
