"""Reload on SIGHUP: new config and rules take effect, broken ones are rejected and audited."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from tests.helpers import (
    DaemonProcess,
    append_lines,
    audit_actions,
    log_events,
    run_cli,
    ssh_failure,
    start_daemon,
    sudo_denied,
    wait_until,
    write_service_config,
)

RULES_FILES = {"files": ["rules.d/*.yaml"]}

EXTRA_RULE = """\
rules:
  - id: test-marker
    category: scanner
    severity: medium
    severity_reason: a test marker
    description: the marker line the reload test writes
    source_types: [syslog]
    pattern: 'IRWATCHD-RELOAD-MARKER'
"""


def _findings(state_dir: Path, rule_id: str) -> list[dict[str, Any]]:
    return [
        record for record in audit_actions(state_dir, "finding") if record["rule"]["id"] == rule_id
    ]


def _originals(state_dir: Path, rule_id: str) -> list[str]:
    return [record["event"]["original"] for record in _findings(state_dir, rule_id)]


def _has_finding(state_dir: Path, rule_id: str, text: str) -> bool:
    return any(text in original for original in _originals(state_dir, rule_id))


def _status(state_dir: Path) -> dict[str, Any]:
    return json.loads((state_dir / "status.json").read_text())


def _reloads_done(state_dir: Path, count: int) -> bool:
    status = _status(state_dir)
    return status["reloads"] >= count and not status["reloading"]


def _start(tmp_path: Path, **settings: Any) -> tuple[DaemonProcess, Path, Path]:
    config = write_service_config(tmp_path / "etc", **settings)
    log = tmp_path / "logs" / "auth.log"
    log.parent.mkdir(exist_ok=True)
    log.touch()
    daemon = start_daemon(tmp_path / "state", [f"{log}:syslog"], config=config)
    return daemon, config, log


def test_reload_disables_rule_keeps_line(tmp_path: Path) -> None:
    daemon, config, log = _start(tmp_path)
    state = daemon.state_dir
    try:
        append_lines(log, [ssh_failure("198.51.100.1")])
        wait_until(lambda: _has_finding(state, "test-ssh-failed", "198.51.100.1"))

        write_service_config(config.parent, rules=RULES_FILES | {"disabled": ["test-ssh-failed"]})
        daemon.signal(signal.SIGHUP)
        append_lines(log, [sudo_denied("during")])
        wait_until(lambda: audit_actions(state, "reload"))
        append_lines(log, [ssh_failure("198.51.100.2"), sudo_denied("after")])
        wait_until(lambda: _has_finding(state, "test-sudo-denied", "after"))
    finally:
        assert daemon.stop() == 0

    reloads = audit_actions(state, "reload")
    assert [record["event"]["outcome"] for record in reloads] == ["success"]
    assert reloads[0]["irwatchd"]["rules"] == 1
    assert _has_finding(state, "test-sudo-denied", "during")
    assert not _has_finding(state, "test-ssh-failed", "198.51.100.2")
    assert len(_originals(state, "test-ssh-failed")) == 1
    assert log_events(daemon, "reload_finished")


def test_reload_command_adds_rule_file(tmp_path: Path) -> None:
    daemon, config, log = _start(tmp_path)
    state = daemon.state_dir
    try:
        (config.parent / "rules.d" / "20-extra.yaml").write_text(EXTRA_RULE)
        result = run_cli("reload", "--state-dir", str(state))
        append_lines(log, ["Dec  4 10:00:00 web1 app: IRWATCHD-RELOAD-MARKER"])
        wait_until(lambda: _has_finding(state, "test-marker", "IRWATCHD-RELOAD-MARKER"))
    finally:
        assert daemon.stop() == 0

    assert result.returncode == 0, result.stderr
    assert f"PID {daemon.process.pid} reloaded" in result.stdout
    assert "3 rules" in result.stdout
    assert _status(state)["last_reload"]["result"] == "success"


def test_reload_invalid_config_rejected(tmp_path: Path) -> None:
    daemon, config, log = _start(tmp_path)
    state = daemon.state_dir
    try:
        config.write_text("rules: {files: [rules.d/*.yaml], disabled: nope}\n")
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: audit_actions(state, "reload"))
        append_lines(log, [ssh_failure("198.51.100.3")])
        wait_until(lambda: _has_finding(state, "test-ssh-failed", "198.51.100.3"))
        wait_until(lambda: _status(state)["reloads"] == 1)
        status = _status(state)
        assert daemon.process.poll() is None
    finally:
        assert daemon.stop() == 0

    reloads = audit_actions(state, "reload")
    assert [record["event"]["outcome"] for record in reloads] == ["failure"]
    assert "rules.disabled" in reloads[0]["irwatchd"]["error"]
    assert str(config) in reloads[0]["irwatchd"]["error"]
    assert status["last_reload"]["result"] == "failure"
    assert status["last_reload"]["error"] == reloads[0]["irwatchd"]["error"]
    assert log_events(daemon, "reload_failed")[0]["level"] == "error"


def test_reload_command_rejects_before_signal(tmp_path: Path) -> None:
    daemon, config, _ = _start(tmp_path)
    state = daemon.state_dir
    try:
        config.write_text("poll_interval_seconds: -1\nrules: {files: [rules.d/*.yaml]}\n")
        result = run_cli("reload", "--state-dir", str(state))
        status = _status(state)
    finally:
        assert daemon.stop() == 0

    assert result.returncode == 78
    assert "poll_interval_seconds" in result.stderr
    assert status["reloads"] == 0
    assert audit_actions(state, "reload") == []


def test_reload_twice_applies_last_edit(tmp_path: Path) -> None:
    daemon, config, log = _start(tmp_path)
    state = daemon.state_dir
    try:
        write_service_config(config.parent, rules=RULES_FILES | {"disabled": ["test-ssh-failed"]})
        daemon.signal(signal.SIGHUP)
        # The second signal comes once the first reload has started, so it cannot merge
        # with it: exactly two reloads run, the second one reading the second edit.
        wait_until(lambda: log_events(daemon, "reload_started"))
        write_service_config(config.parent, rules=RULES_FILES | {"disabled": ["test-sudo-denied"]})
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: _reloads_done(state, 2))
        append_lines(log, [sudo_denied("mallory"), ssh_failure("198.51.100.4")])
        wait_until(lambda: _has_finding(state, "test-ssh-failed", "198.51.100.4"))
        assert daemon.process.poll() is None
    finally:
        assert daemon.stop() == 0

    outcomes = [record["event"]["outcome"] for record in audit_actions(state, "reload")]
    assert outcomes == ["success", "success"]
    assert not _has_finding(state, "test-sudo-denied", "mallory")


def test_reload_keeps_windows_and_incidents(tmp_path: Path) -> None:
    daemon, _, log = _start(tmp_path)
    state = daemon.state_dir
    address = "198.51.100.5"
    try:
        append_lines(log, [ssh_failure(address, seq) for seq in range(3)])
        wait_until(lambda: len(_originals(state, "test-ssh-failed")) == 3)
        wait_until(lambda: _status(state)["open_incidents"] == 1)
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: _reloads_done(state, 1))
        append_lines(log, [ssh_failure(address, seq) for seq in range(3, 5)])
        wait_until(lambda: _findings(state, "brute-force"))
    finally:
        assert daemon.stop() == 0

    brute_force = _findings(state, "brute-force")
    assert len(brute_force) == 1
    assert brute_force[0]["source"]["ip"] == address
    assert [record["event"]["outcome"] for record in audit_actions(state, "reload")] == ["success"]


def _open_paths(daemon: DaemonProcess) -> set[str]:
    folder = Path(f"/proc/{daemon.process.pid}/fd")
    paths = set()
    for link in folder.iterdir():
        try:
            paths.add(str(link.readlink()))
        except OSError:
            continue  # closed in the meantime
    return paths


def test_reload_unwatches_removed_source_and_resumes_it(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    still_watched, dropped = logs / "kept.log", logs / "dropped.log"
    still_watched.touch()
    dropped.touch()
    both = {"security": [{"path": str(still_watched), "type": "syslog"}, str(dropped)]}
    config = write_service_config(tmp_path / "etc", sources=both)
    daemon = start_daemon(tmp_path / "state", [], config=config)
    state = daemon.state_dir
    try:
        append_lines(dropped, [ssh_failure("198.51.100.10")])
        wait_until(lambda: _has_finding(state, "test-ssh-failed", "198.51.100.10"))

        write_service_config(config.parent, sources={"security": [str(still_watched)]})
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: _reloads_done(state, 1))
        wait_until(lambda: str(dropped) not in _open_paths(daemon))
        append_lines(dropped, [ssh_failure("198.51.100.11")])
        append_lines(still_watched, [ssh_failure("198.51.100.12")])
        wait_until(lambda: _has_finding(state, "test-ssh-failed", "198.51.100.12"))
        unwatched_findings = _originals(state, "test-ssh-failed")

        write_service_config(config.parent, sources=both)
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: _reloads_done(state, 2))
        wait_until(lambda: _has_finding(state, "test-ssh-failed", "198.51.100.11"))
    finally:
        assert daemon.stop() == 0

    assert not any("198.51.100.11" in line for line in unwatched_findings)
    assert [entry["location"] for entry in log_events(daemon, "file_unwatched")] == [str(dropped)]
    # Read again from its checkpoint: the line written while unwatched, once, and no other.
    assert len(_originals(state, "test-ssh-failed")) == 3


def test_reload_applied_inside_long_backlog(tmp_path: Path) -> None:
    # 28 MB of findings take the daemon seconds to read. The reload, validated in
    # milliseconds, must come into force at a checkpoint inside that backlog, not after it.
    # The status file is written as each reload ends, with the lines read by then.
    daemon, config, log = _start(tmp_path)
    state = daemon.state_dir
    count = 300_000
    backlog = "".join(ssh_failure(f"198.51.100.{seq % 250}", seq) + "\n" for seq in range(count))
    try:
        with log.open("a", encoding="utf-8") as handle:
            handle.write(backlog)
        write_service_config(config.parent, rules=RULES_FILES | {"disabled": ["test-sudo-denied"]})
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: _reloads_done(state, 1), timeout=180)
        read_at_reload = _status(state)["lines_read"]
        wait_until(lambda: _status(state)["lines_read"] == count, timeout=180)
    finally:
        assert daemon.stop() == 0

    assert read_at_reload < count, "the reload came into force only after the backlog"
