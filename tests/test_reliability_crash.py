"""The daemon as a subprocess survives kill -9, a full disk and missing inotify without losing
or repeating a line, a finding, or an action.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from irwatchd.audit.log import chain_files
from tests.helpers import (
    DaemonProcess,
    append_lines,
    audit_actions,
    fill,
    finding_originals,
    log_events,
    run_cli,
    sequence_counts,
    sshd_failure_lines,
    start_daemon,
    wait_until,
    write_daemon_config,
)

BURST = 100_000
ADDRESSES = 40
"""Few enough that every address gets a block within the default block rate limit."""


def count_findings(state: Path, rule_id: str = "sshd-failed-auth") -> int:
    """Count finding records of one rule without parsing them: fast enough to poll."""
    marker = f'"id":"{rule_id}"'.encode()
    total = 0
    for path in chain_files(state / "audit.jsonl"):
        for raw in path.read_bytes().split(b"\n"):
            if marker in raw and b'"action":"finding"' in raw:
                total += 1
    return total


def actions(state: Path, action: str) -> list[dict[str, Any]]:
    """Return the audit records of one `event.action`, across rotated audit files."""
    marker = f'"action":"{action}"'.encode()
    records = []
    for path in chain_files(state / "audit.jsonl"):
        for raw in path.read_bytes().split(b"\n"):
            if marker in raw:
                records.append(json.loads(raw))
    return records


def committed_offset(state: Path, log: Path) -> int:
    """Return the checkpointed offset of the file now at `log`."""
    info = log.stat()
    document = json.loads((state / "checkpoints.json").read_text())
    for checkpoint in document["checkpoints"]:
        if (checkpoint["device"], checkpoint["inode"]) == (info.st_dev, info.st_ino):
            return int(checkpoint["offset"])
    return -1


def stopped_with_findings_after_checkpoint(daemon: DaemonProcess, state: Path) -> bool:
    """Stop the daemon; keep it stopped if findings were recorded after its last checkpoint.

    A kill then always leaves lines that are read again, whose findings must be skipped.
    """
    daemon.signal(signal.SIGSTOP)
    saved = state / "checkpoints.json"
    # The first checkpoint of a burst comes only after CHECKPOINT_EVERY_BYTES of it.
    position = json.loads(saved.read_text())["audit_position"] if saved.exists() else None
    audit = state / "audit.jsonl"
    if position is not None and audit.stat().st_ino == position["inode"]:
        with audit.open("rb") as handle:
            handle.seek(position["size"])
            if b'"action":"finding"' in handle.read():
                return True
    daemon.signal(signal.SIGCONT)
    return False


def peak_memory_kib(daemon: DaemonProcess) -> int:
    """Return the daemon's peak resident memory (VmHWM) in KiB."""
    status = Path(f"/proc/{daemon.process.pid}/status").read_text()
    line = next(item for item in status.splitlines() if item.startswith("VmHWM:"))
    return int(line.split()[1])


@pytest.mark.slow
def test_kill_9_mid_burst_loses_and_repeats_nothing(tmp_path: Path) -> None:
    logs, state = tmp_path / "logs", tmp_path / "state"
    logs.mkdir()
    auth = logs / "auth.log"
    auth.touch()
    config = write_daemon_config(tmp_path)
    daemon = start_daemon(state, [f"{auth}:syslog"], config=config)
    lines = sshd_failure_lines(range(BURST), ADDRESSES)
    auth.write_text("".join(line + "\n" for line in lines))

    wait_until(lambda: count_findings(state) >= BURST // 5, timeout=120, interval=0.2)
    wait_until(lambda: stopped_with_findings_after_checkpoint(daemon, state), timeout=60)
    daemon.process.kill()
    daemon.process.wait(timeout=20)
    assert count_findings(state) < BURST, "the burst ended before the kill; nothing was tested"

    daemon = start_daemon(state, [f"{auth}:syslog"], config=config)
    recovered = log_events(daemon, "audit_recovered")[-1]
    assert recovered["dedup_keys"] > 0
    size = auth.stat().st_size
    wait_until(lambda: committed_offset(state, auth) == size, timeout=240, interval=0.5)
    peak_kib = peak_memory_kib(daemon)
    print(f"daemon peak resident memory after the burst: {peak_kib} KiB")
    assert daemon.stop() == 0, daemon.log_text()

    counts = sequence_counts(finding_originals(state))
    missing = sorted(set(range(BURST)) - set(counts))
    repeated = sorted(seq for seq, count in counts.items() if count > 1)
    assert missing == [], f"{len(missing)} lines without a finding, first {missing[:10]}"
    assert repeated == [], f"{len(repeated)} lines with repeated findings, first {repeated[:10]}"
    assert sum(counts.values()) == BURST

    # One correlated brute_force finding, one block, one alert and one ticket per address.
    brute_force = Counter(
        record["source"]["ip"]
        for record in actions(state, "finding")
        if record["rule"]["id"] == "brute-force"
    )
    assert len(brute_force) == ADDRESSES
    assert set(brute_force.values()) == {1}
    blocks = Counter(
        record["source"]["ip"]
        for record in actions(state, "block")
        if record["event"]["outcome"] == "success"
    )
    assert len(blocks) == ADDRESSES
    assert set(blocks.values()) == {1}
    alerts = Counter(record["irwatchd"]["incident_id"] for record in actions(state, "alert"))
    assert len(alerts) == ADDRESSES
    assert set(alerts.values()) == {1}
    assert len(list((state / "alerts" / "tickets").glob("*.json"))) == ADDRESSES

    assert run_cli("audit", "verify", "--state-dir", str(state)).returncode == 0
    # Reading is bounded to 1 MiB per file per poll; the whole burst is 10 MB of log.
    assert peak_kib < 400 * 1024, f"peak resident memory {peak_kib} KiB"


FILE_BURST_SOURCES = 3_000
"""Enough new sources that their tickets and alert files wait until the burst is read."""


def ipv6_failure_lines(sources: int, network: str) -> list[str]:
    """Return five sshd failures from each of `sources` addresses in `network` (a /64 prefix)."""
    stamp = datetime.now(UTC).strftime("%b %e %H:%M:%S")
    return [
        f"{stamp} web1 sshd[{2000 + attempt}]: Failed password for root from "
        f"{network}{index + 1:x} port {40000 + attempt} ssh2"
        for index in range(sources)
        for attempt in range(5)
    ]


def stopped_with_blocks_before_tickets(daemon: DaemonProcess, state: Path) -> bool:
    """Stop the daemon; keep it stopped if block records follow its last checkpoint but no
    ticket record does yet. A kill then leaves files that were never written."""
    daemon.signal(signal.SIGSTOP)
    position = json.loads((state / "checkpoints.json").read_text())["audit_position"]
    with (state / "audit.jsonl").open("rb") as handle:
        handle.seek(position["size"])
        written = handle.read()
    if b'"action":"block","outcome":"success"' in written and b'"action":"ticket"' not in written:
        return True
    daemon.signal(signal.SIGCONT)
    return False


@pytest.mark.slow
def test_kill_9_before_files_refiles_them(tmp_path: Path) -> None:
    logs, state = tmp_path / "logs", tmp_path / "state"
    logs.mkdir()
    auth = logs / "auth.log"
    auth.touch()
    config = write_daemon_config(tmp_path, blocking={"max_blocks_per_minute": 1_000_000})
    daemon = start_daemon(state, [f"{auth}:syslog"], config=config)
    # One attack first, so a checkpoint with an audit position exists before the burst.
    append_lines(auth, ipv6_failure_lines(1, "2001:db8:5::"))
    saved = state / "checkpoints.json"
    wait_until(lambda: saved.exists() and committed_offset(state, auth) == auth.stat().st_size)

    append_lines(auth, ipv6_failure_lines(FILE_BURST_SOURCES, "2001:db8:6::"))
    wait_until(lambda: stopped_with_blocks_before_tickets(daemon, state), timeout=60, interval=0.02)
    daemon.process.kill()
    daemon.process.wait(timeout=20)
    tickets_before = len(list((state / "alerts" / "tickets").glob("inc-*.json")))
    assert tickets_before < FILE_BURST_SOURCES, "the burst's tickets were written before the kill"

    daemon = start_daemon(state, [f"{auth}:syslog"], config=config)
    size = auth.stat().st_size
    wait_until(lambda: committed_offset(state, auth) == size, timeout=120, interval=0.2)
    assert daemon.stop() == 0, daemon.log_text()
    refiled = log_events(daemon, "findings_refiled")
    assert len(refiled) == 1
    assert refiled[0]["refiled"] > 0

    sources = FILE_BURST_SOURCES + 1
    brute_force = [
        record for record in actions(state, "finding") if record["rule"]["id"] == "brute-force"
    ]
    assert len({record["source"]["ip"] for record in brute_force}) == sources
    assert len(brute_force) == sources
    incident_ids = {record["irwatchd"]["incident_id"] for record in brute_force}
    assert len(incident_ids) == sources

    blocks = Counter(
        record["source"]["ip"]
        for record in actions(state, "block")
        if record["event"]["outcome"] == "success"
    )
    assert len(blocks) == sources
    assert set(blocks.values()) == {1}

    alerts = Counter(record["irwatchd"]["incident_id"] for record in actions(state, "alert"))
    assert set(alerts) == incident_ids
    assert set(alerts.values()) == {1}
    for record in actions(state, "alert"):
        assert Path(record["irwatchd"]["alert_path"]).exists(), record["irwatchd"]["alert_path"]

    tickets = {path.stem for path in (state / "alerts" / "tickets").glob("inc-*.json")}
    assert tickets == incident_ids
    ticket_records = Counter(
        record["irwatchd"]["incident_id"] for record in actions(state, "ticket")
    )
    assert set(ticket_records) == incident_ids
    assert run_cli("audit", "verify", "--state-dir", str(state)).returncode == 0


@pytest.mark.parametrize("switch", ["flag", "environment"])
def test_polling_mode_sees_every_line(tmp_path: Path, switch: str) -> None:
    logs, state = tmp_path / "logs", tmp_path / "state"
    logs.mkdir()
    auth = logs / "auth.log"
    auth.touch()
    config = write_daemon_config(tmp_path)
    extra = ("--polling",) if switch == "flag" else ()
    environment = {"IRWATCHD_FORCE_POLLING": "1"} if switch == "environment" else None
    daemon = start_daemon(state, [f"{auth}:syslog"], *extra, config=config, env=environment)

    def watch_mode() -> str | None:
        status = state / "status.json"
        return json.loads(status.read_text()).get("watch_mode") if status.exists() else None

    wait_until(watch_mode)
    assert watch_mode() == "polling"
    append_lines(auth, sshd_failure_lines(range(50)))
    wait_until(lambda: len(finding_originals(state)) >= 50)
    os.rename(auth, logs / "auth.log.1")
    append_lines(auth, sshd_failure_lines(range(100, 120)))
    wait_until(lambda: len(finding_originals(state)) >= 70)
    assert daemon.stop() == 0

    counts = sequence_counts(finding_originals(state))
    assert counts == Counter({seq: 1 for seq in [*range(50), *range(100, 120)]})


def test_full_disk_retries_without_loss(tmp_path: Path, tiny_filesystem: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    auth = logs / "auth.log"
    auth.touch()
    state = tiny_filesystem / "state"
    # One-second blocks, so a block expires while the disk is full.
    config = write_daemon_config(tmp_path, blocking={"duration_seconds": 1})
    # The daemon's own log goes to another disk, so its errors can be read while this one is
    # full. `test_log_output.py` covers a log on the full disk.
    daemon = start_daemon(state, [f"{auth}:syslog"], config=config, log_dir=tmp_path)
    # Lines 0 and 1000-4000 come from one address: a brute_force incident and a block.
    first = [*range(10), 1000, 2000, 3000, 4000]
    append_lines(auth, sshd_failure_lines(first, addresses=1000))
    wait_until(lambda: len(finding_originals(state)) == len(first))
    wait_until(lambda: audit_actions(state, "block"))
    wait_until(lambda: committed_offset(state, auth) == auth.stat().st_size)
    checkpoint_before = committed_offset(state, auth)

    filler = fill(tiny_filesystem)
    # Twenty single failures, and five from one more address: a brute force while full.
    during = [*range(10, 30), 100, 1100, 2100, 3100, 4100]
    append_lines(auth, sshd_failure_lines(during, addresses=1000))
    failures = wait_until(lambda: log_events(daemon, "findings_not_recorded"))
    assert failures[0]["error"].startswith("[Errno 28]")
    assert str(state) in failures[0]["hint"]
    assert "free space" in failures[0]["hint"]
    wait_until(lambda: log_events(daemon, "block_upkeep_failed"))
    # A fixed wait, because the check is that nothing moves: about five retries at 0.2 s.
    time.sleep(1)
    assert daemon.process.poll() is None, "the daemon exited on a full disk"
    # Records that fitted in the audit log's last, already allocated page are kept. The
    # checkpoint stays before all of the lines, because not all of them were recorded.
    assert len(finding_originals(state)) < len(first) + len(during)
    assert committed_offset(state, auth) == checkpoint_before
    # The status file is one of the failing writes, so `status` checks the free space itself.
    full = run_cli("status", "--state-dir", str(state))
    assert full.returncode == 0, full.stderr
    assert f"WARNING: the file system of {state} has only " in full.stdout

    filler.unlink()
    expected = [*first, *during]
    wait_until(lambda: len(finding_originals(state)) >= len(expected), timeout=30)
    wait_until(lambda: committed_offset(state, auth) == auth.stat().st_size)
    freed = run_cli("status", "--state-dir", str(state))
    assert "is full" not in freed.stdout
    wait_until(lambda: len(audit_actions(state, "unblock")) >= 2)
    assert daemon.stop() == 0, daemon.log_text()

    assert sequence_counts(finding_originals(state)) == Counter({seq: 1 for seq in expected})
    verify = run_cli("audit", "verify", "--state-dir", str(state))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # The block that expired while the disk was full was lifted then, and audited once after.
    # Each retry read the new failures again, and they were counted once: the one brute force
    # while full is recorded and blocked, and no single failure became one.
    brute_force = [
        record["source"]["ip"]
        for record in audit_actions(state, "finding")
        if record["rule"]["category"] == "brute_force"
    ]
    blocked = [record["source"]["ip"] for record in audit_actions(state, "block")]
    unblocked = [record["source"]["ip"] for record in audit_actions(state, "unblock")]
    assert len(brute_force) == 2, "a brute force was lost, or retries made one"
    assert len(blocked) == 2, "retries counted single failures into brute force"
    assert sorted(unblocked) == sorted(blocked)
    assert len(set(blocked)) == 2
    reasons = {record["irwatchd"]["reason"] for record in audit_actions(state, "unblock")}
    assert reasons == {"expired"}, "a block was lifted as if `irwatchd blocks` removed it"
    status = json.loads((state / "status.json").read_text())
    assert status["lines_read"] == len(expected), "lines read again were counted twice"
    assert status["findings"] == len(expected) + len(brute_force)


def test_first_block_on_full_disk_is_kept(tmp_path: Path, tiny_filesystem: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    auth = logs / "auth.log"
    auth.touch()
    state = tiny_filesystem / "state"
    daemon = start_daemon(
        state, [f"{auth}:syslog"], config=write_daemon_config(tmp_path), log_dir=tmp_path
    )
    append_lines(auth, sshd_failure_lines([1, 2], addresses=1000))
    wait_until(lambda: len(finding_originals(state)) == 2)
    wait_until(lambda: committed_offset(state, auth) == auth.stat().st_size)

    # The first block comes while the disk is full, so blocks.json does not exist yet.
    filler = fill(tiny_filesystem)
    append_lines(auth, sshd_failure_lines(range(100, 5100, 1000), addresses=1000))
    wait_until(lambda: log_events(daemon, "findings_not_recorded"))
    # A fixed wait, because the check is that nothing moves: about ten retries at 0.2 s.
    time.sleep(2)
    filler.unlink()
    wait_until(lambda: len(finding_originals(state)) == 7, timeout=30)
    wait_until(lambda: committed_offset(state, auth) == auth.stat().st_size)
    assert daemon.stop() == 0, daemon.log_text()

    blocks = audit_actions(state, "block")
    assert [record["source"]["ip"] for record in blocks] == ["203.0.113.101"]
    assert blocks[0]["irwatchd"]["block_result"] == "blocked"
    assert audit_actions(state, "unblock") == [], "the unsaved block looked removed by hand"
    assert "203.0.113.101" in json.loads((state / "blocks.json").read_text())
