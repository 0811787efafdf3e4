"""The block store with the `command` back-end running a real program that records its arguments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from irwatchd.config import Blocking
from irwatchd.response.allowlist import Allowlist
from irwatchd.response.backends import BackendError, CommandBackend, build_backend
from irwatchd.response.blocking import BlockStore
from irwatchd.schema import convert
from tests.helpers import ROOT, append_lines, audit_actions, run_cli, running_daemon, wait_until

RECORDER = """\
import json, sys
with open(sys.argv[1], "a") as handle:
    handle.write(json.dumps(sys.argv[2:]) + "\\n")
"""


@pytest.fixture
def recorder(tmp_path: Path) -> tuple[Path, Path]:
    """Return a script that appends its arguments to a JSON-lines file, and that file."""
    script = tmp_path / "record_argv.py"
    script.write_text(RECORDER)
    return script, tmp_path / "argv.jsonl"


def _settings(recorder: tuple[Path, Path], **overrides: object) -> Blocking:
    script, argv_log = recorder
    values: dict[str, object] = {
        "backend": "command",
        "command": [sys.executable, str(script), str(argv_log), "add", "{address}", "{seconds}"],
        "unblock_command": [sys.executable, str(script), str(argv_log), "del", "{address}"],
        "duration_seconds": 100,
    }
    return convert(values | overrides, Blocking, "test")


def _store(tmp_path: Path, settings: Blocking) -> BlockStore:
    return BlockStore(
        tmp_path / "blocks.json", build_backend(settings), Allowlist(settings.allowlist), settings
    )


def _calls(argv_log: Path) -> list[list[str]]:
    if not argv_log.exists():
        return []
    return [json.loads(line) for line in argv_log.read_text().splitlines()]


def test_command_runs_with_separate_arguments(tmp_path: Path, recorder: tuple[Path, Path]) -> None:
    store = _store(tmp_path, _settings(recorder))
    result = store.block("::ffff:192.0.2.33", reason="test", incident_id=None)
    assert result.outcome == "blocked"
    assert result.address == "192.0.2.33", "IPv4-mapped IPv6 is blocked as the IPv4 address"
    assert _calls(recorder[1]) == [["add", "192.0.2.33", "100"]]
    assert store.unblock("192.0.2.33") is True
    assert store.unblock("192.0.2.33") is False, "lifting an absent block is not an error"
    assert _calls(recorder[1])[1:] == [["del", "192.0.2.33"], ["del", "192.0.2.33"]]


def test_invalid_and_allowlisted_never_run(tmp_path: Path, recorder: tuple[Path, Path]) -> None:
    settings = _settings(recorder, allowlist=["10.0.0.0/8", "2001:db8::/32"])
    store = _store(tmp_path, settings)
    for value in ["192.0.2.1;id", "-rf", "$(id)", "192.0.2.1 192.0.2.2", ""]:
        assert store.block(value, reason="test", incident_id=None).outcome == "invalid", value
    for value in ["10.1.2.3", "::ffff:10.9.9.9", "2001:db8::5"]:
        assert store.block(value, reason="test", incident_id=None).outcome == "allowlisted", value
    assert _calls(recorder[1]) == []


def test_render_rejects_non_canonical_address() -> None:
    with pytest.raises(BackendError, match="not a canonical IP address"):
        CommandBackend.render(["/bin/true", "{address}"], "192.0.2.1 --all", 10)


def test_rate_cap_limits_new_blocks(tmp_path: Path, recorder: tuple[Path, Path]) -> None:
    store = _store(tmp_path, _settings(recorder, max_blocks_per_minute=3))
    outcomes = [
        store.block(f"203.0.113.{n}", reason="flood", incident_id=None).outcome for n in range(5)
    ]
    assert outcomes == ["blocked"] * 3 + ["rate_limited"] * 2
    assert len(_calls(recorder[1])) == 3
    manual = store.block("203.0.113.99", reason="by hand", incident_id=None, source="cli")
    assert manual.outcome == "blocked", "the rate cap applies to automatic blocks only"


def test_repeat_offender_gets_longer_blocks(tmp_path: Path, recorder: tuple[Path, Path]) -> None:
    settings = _settings(
        recorder, duration_seconds=100, increment_factor=3, max_duration_seconds=500
    )
    store = _store(tmp_path, settings)
    seconds = []
    for _ in range(4):
        result = store.block("198.51.100.4", reason="again", incident_id=None)
        seconds.append((result.seconds, result.offences))
        store.expire(now=result.expires_at)
    assert seconds == [(100, 1), (300, 2), (500, 3), (500, 4)]
    reopened = _store(tmp_path, settings)
    assert reopened.duration_for("198.51.100.4", now=reopened_now(tmp_path)) == (500, 5)


def reopened_now(tmp_path: Path) -> float:
    history = json.loads((tmp_path / "blocks.history.json").read_text())
    return float(history["198.51.100.4"]["last_at"]) + 1


def test_failing_command_reports_failure(tmp_path: Path, recorder: tuple[Path, Path]) -> None:
    failing = tmp_path / "fail.py"
    failing.write_text("import sys\nprint('firewall busy', file=sys.stderr)\nsys.exit(3)\n")
    settings = _settings(recorder, command=[sys.executable, str(failing), "{address}"])
    result = _store(tmp_path, settings).block("192.0.2.44", reason="test", incident_id=None)
    assert result.outcome == "failed"
    assert "exited with status 3: firewall busy" in (result.error or "")
    assert not (tmp_path / "blocks.json").exists(), "a failed block is not recorded as active"


def test_cli_block_reaches_running_daemon(tmp_path: Path, recorder: tuple[Path, Path]) -> None:
    script, argv_log = recorder
    recorder_argv = [sys.executable, str(script), str(argv_log)]
    config = tmp_path / "irwatchd.yaml"
    config.write_text(
        f"""
rules:
  files: ["{ROOT}/etc/rules.d/*.yaml"]
poll_interval_seconds: 0.2
blocking:
  backend: command
  command: {json.dumps([*recorder_argv, "add", "{address}", "{seconds}"])}
  unblock_command: {json.dumps([*recorder_argv, "del", "{address}"])}
"""
    )
    state, log = tmp_path / "state", tmp_path / "auth.log"
    cli = ["-c", str(config), "--state-dir", str(state)]
    with running_daemon(state, [f"{log}:syslog"], config=config):
        added = run_cli("blocks", "add", "192.0.2.55", "--seconds", "30", *cli)
        assert added.returncode == 0, added.stderr
        wait_until(lambda: ["add", "192.0.2.55", "30"] in _calls(argv_log))
        listed = run_cli("blocks", "list", "--json", *cli)
        assert json.loads(listed.stdout)["address"] == "192.0.2.55"
        removed = run_cli("blocks", "remove", "192.0.2.55", *cli)
        assert removed.returncode == 0, removed.stderr
        wait_until(lambda: ["del", "192.0.2.55"] in _calls(argv_log))
        append_lines(log, [])
    assert _calls(argv_log) == [["add", "192.0.2.55", "30"], ["del", "192.0.2.55"]], (
        "applied once each"
    )
    applied = [r["irwatchd"].get("applied_by") for r in audit_actions(state, "block")]
    assert applied == ["daemon", "daemon"], "the CLI's record and the daemon's record"
    steps = [r["irwatchd"].get("step") for r in audit_actions(state, "block")]
    assert steps == ["requested", "applied"]
    unblock_steps = [r["irwatchd"].get("step") for r in audit_actions(state, "unblock")]
    assert unblock_steps == ["requested", "applied"]


def test_daemon_audits_rate_limited_blocks(tmp_path: Path) -> None:
    config = tmp_path / "irwatchd.yaml"
    config.write_text(
        f"""
rules:
  files: ["{ROOT}/etc/rules.d/*.yaml"]
correlation: []
policy:
  low: [audit, block]
blocking:
  max_blocks_per_minute: 2
"""
    )
    state, log = tmp_path / "state", tmp_path / "auth.log"
    addresses = [f"203.0.113.{number}" for number in range(70, 74)]
    prefix = "Dec 10 06:55:48 host sshd[24200]: Failed password for root from"
    with running_daemon(state, [f"{log}:syslog"], config=config):
        append_lines(log, [f"{prefix} {address} port 22 ssh2" for address in addresses])
        wait_until(lambda: len(audit_actions(state, "block")) == 4)
    records = audit_actions(state, "block")
    results = [(r["source"]["ip"], r["irwatchd"]["block_result"]) for r in records]
    assert results == [
        (addresses[0], "blocked"),
        (addresses[1], "blocked"),
        (addresses[2], "rate_limited"),
        (addresses[3], "rate_limited"),
    ]
    assert [r["event"]["outcome"] for r in records] == ["success", "success", "unknown", "unknown"]
    assert sorted(json.loads((state / "blocks.json").read_text())) == addresses[:2]


def test_daemon_reblocks_repeat_offender_longer(tmp_path: Path) -> None:
    config = tmp_path / "irwatchd.yaml"
    config.write_text(
        f"""
rules:
  files: ["{ROOT}/etc/rules.d/*.yaml"]
correlation: []
poll_interval_seconds: 0.2
policy:
  low: [audit, block]
blocking:
  duration_seconds: 1
  increment_factor: 3
"""
    )
    state, log = tmp_path / "state", tmp_path / "auth.log"
    line = (
        "Dec 10 06:55:48 host sshd[24200]: Failed password for root from 198.51.100.80 port 22 ssh2"
    )
    with running_daemon(state, [f"{log}:syslog"], config=config):
        append_lines(log, [line])
        wait_until(lambda: audit_actions(state, "unblock"))
        append_lines(log, [line])
        wait_until(lambda: len(audit_actions(state, "block")) == 2)
    blocks = audit_actions(state, "block")
    assert [r["irwatchd"]["seconds"] for r in blocks] == [1, 3]
    assert [r["irwatchd"]["offence"] for r in blocks] == [1, 2]
    assert blocks[0]["irwatchd"]["incident_id"] == blocks[1]["irwatchd"]["incident_id"]
    assert audit_actions(state, "unblock")[0]["irwatchd"]["reason"] == "expired"


def test_command_stdin_devnull_when_detached() -> None:
    # python-daemon leaves a detached daemon's fd 0 on /dev/null but close-on-exec. A block
    # command must still start with /dev/null as its standard input, not with no fd 0.
    check = "import os, sys; sys.exit(0 if os.readlink('/proc/self/fd/0') == '/dev/null' else 3)"
    program = (
        "import os, sys\n"
        "os.set_inheritable(0, False)\n"
        "from irwatchd.response.backends import _run\n"
        f"_run([sys.executable, '-c', {check!r}], 30)\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", program], stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
