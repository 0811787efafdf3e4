"""Blocks handed over in batches: nftables transactions that split on rejection, and a
daemon burst whose every source gets exactly one block record, ticket and blocks.json entry.

A stand-in `nft` (a real program at an absolute path) rejects any transaction that names one
chosen address, as nft rejects a whole transaction for one bad element, and logs the
elements of every transaction it accepts.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from irwatchd.audit.log import AuditLog
from irwatchd.config import LoadedConfig, validate_config
from irwatchd.detection.finding import Finding
from irwatchd.parsing.record import LogRecord
from irwatchd.response import responder as responder_module
from irwatchd.response import tickets as tickets_module
from irwatchd.response.backends import NftablesBackend
from irwatchd.response.responder import Responder, StatePaths, dedup_key
from tests.helpers import audit_actions, read_audit, start_daemon, wait_until, write_daemon_config

REJECTED = "192.0.2.66"

FAKE_NFT = """#!{python}
import json, sys
document = json.load(sys.stdin)
elements = []
for command in document["nftables"]:
    for verb, body in command.items():
        element = body.get("element")
        if verb == "add" and element is not None:
            for item in element["elem"]:
                elements.append(item["elem"]["val"] if isinstance(item, dict) else item)
with open({runs!r}, "a") as runs:
    runs.write(json.dumps(elements) + "\\n")
if {rejected!r} in elements:
    sys.stderr.write("Error: Could not process rule: Invalid argument\\n")
    sys.exit(1)
"""


def _fake_nft(folder: Path) -> tuple[Path, Path]:
    """Write the stand-in nft; return its path and the file that logs each transaction."""
    program, runs = folder / "nft", folder / "nft-runs.jsonl"
    program.write_text(FAKE_NFT.format(python=sys.executable, runs=str(runs), rejected=REJECTED))
    program.chmod(0o755)
    return program, runs


def _transactions(runs: Path) -> list[list[str]]:
    return [json.loads(line) for line in runs.read_text().splitlines()]


def _addresses(count: int) -> list[str]:
    """Return `count` IPv4 and IPv6 addresses, alternating, with REJECTED among them."""
    addresses = []
    for index in range(count):
        if index % 2:
            addresses.append(f"2001:db8:7::{index:x}")
        else:
            addresses.append(f"198.51.{index // 256}.{index % 256}")
    addresses[count // 3] = REJECTED
    return addresses


def test_rejected_batch_splits_to_bad_element(tmp_path: Path) -> None:
    program, runs = _fake_nft(tmp_path)
    backend = NftablesBackend(str(program), "irwatchd", 0, timeout=30)
    addresses = _addresses(300)

    failures = backend.add_many([(address, 60) for address in addresses])

    assert list(failures) == [REJECTED]
    assert "Invalid argument" in failures[REJECTED]
    accepted = [
        elements for elements in _transactions(runs) if elements and REJECTED not in elements
    ]
    applied = Counter(address for elements in accepted for address in elements)
    # Each accepted transaction adds every element twice: once to reset its timeout.
    assert set(applied) == set(addresses) - {REJECTED}
    assert set(applied.values()) == {2}
    # One table set-up, one rejected batch, then halves: about 2 * log2(300) runs, not 300.
    assert len(_transactions(runs)) <= 2 + 2 * 9


def test_missing_nft_fails_every_address_once(tmp_path: Path) -> None:
    backend = NftablesBackend(str(tmp_path / "missing-nft"), "irwatchd", 0, timeout=30)
    addresses = _addresses(40)

    failures = backend.add_many([(address, 60) for address in addresses])

    assert set(failures) == set(addresses)
    assert all("not found" in message for message in failures.values())


def test_invalid_address_fails_without_nft_run(tmp_path: Path) -> None:
    program, runs = _fake_nft(tmp_path)
    backend = NftablesBackend(str(program), "irwatchd", 0, timeout=30)

    failures = backend.add_many([("192.0.2.1", 60), ("192.0.2.1; flush ruleset", 60)])

    assert list(failures) == ["192.0.2.1; flush ruleset"]
    assert "not a canonical IP address" in failures["192.0.2.1; flush ruleset"]
    assert all("192.0.2.1; flush ruleset" not in run for run in _transactions(runs))


def _finding(address: str, offset: int) -> Finding:
    raw = f"Dec 10 06:55:48 host sshd[1]: Failed password for root from {address} port 22 ssh2"
    record = LogRecord(raw=raw, view=raw, source_type="syslog", path="/var/log/auth.log",
                       offset=offset, host="host", time=datetime.now(UTC))  # fmt: skip
    return Finding(rule_id="sshd-failed-auth", category="failed_login", severity="low",
                   record=record, source_ip=address, user="root")  # fmt: skip


def _responder(
    tmp_path: Path, settings: dict[str, object], *, started: bool = False
) -> tuple[Responder, StatePaths, AuditLog]:
    """Return a responder over a new state folder, its paths and its audit log.

    With `started`, the audit log already has one record, so it is larger than a new file.
    """
    config = validate_config(settings)
    paths = StatePaths(tmp_path / "state")
    paths.create()
    audit = AuditLog(paths.audit_log)
    if started:
        audit.append({"event": {"action": "start", "outcome": "success"}})
    return Responder(LoadedConfig(config, None), paths, audit), paths, audit


def test_responder_audits_each_batched_block(tmp_path: Path) -> None:
    program, runs = _fake_nft(tmp_path)
    responder, paths, audit = _responder(
        tmp_path,
        {
            "policy": {"low": ["audit", "ticket", "block"]},
            "correlation": [],
            "blocking": {"backend": "nftables", "nft_path": str(program),
                         "max_blocks_per_minute": 10_000},
        },
    )  # fmt: skip
    addresses = _addresses(200)
    runs_before = len(_transactions(runs))
    try:
        for offset, address in enumerate(addresses):
            responder.handle(_finding(address, offset))
        assert audit_actions(paths.root, "block") == [], "blocks wait for the flush"
        responder.flush()
    finally:
        responder.close()
        audit.close()

    blocks = audit_actions(paths.root, "block")
    outcomes = {record["source"]["ip"]: record["event"]["outcome"] for record in blocks}
    assert len(blocks) == len(addresses)
    assert outcomes == {address: "success" for address in addresses} | {REJECTED: "failure"}
    failed = [record for record in blocks if record["event"]["outcome"] == "failure"]
    assert "Invalid argument" in failed[0]["irwatchd"]["error"]
    saved = json.loads(paths.blocks.read_text())
    assert set(saved) == set(addresses) - {REJECTED}
    assert len(list(paths.tickets.glob("inc-*.json"))) == len(addresses)
    # The first transaction held every address; only the halves that held REJECTED repeat.
    assert len(_transactions(runs)) - runs_before <= 1 + 2 * 8


def test_daemon_burst_blocks_every_source_once(tmp_path: Path) -> None:
    sources = 600
    logs, state = tmp_path / "logs", tmp_path / "state"
    logs.mkdir()
    auth = logs / "auth.log"
    auth.touch()
    config = write_daemon_config(
        tmp_path, blocking={"max_blocks_per_minute": 100_000}, start_at="end"
    )
    addresses = [f"2001:db8:9:{index + 1:x}::1" for index in range(sources)]
    daemon = start_daemon(state, [f"{auth}:syslog"], config=config)
    try:
        stamp = datetime.now(UTC).strftime("%b %e %H:%M:%S")
        lines = [
            f"{stamp} bastion sshd[{3000 + attempt}]: Failed password for root from "
            f"{address} port {40000 + attempt} ssh2"
            for address in addresses
            for attempt in range(5)
        ]
        with auth.open("a", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in lines))
        wait_until(lambda: len(audit_actions(state, "block")) >= sources, timeout=120)
    finally:
        assert daemon.stop() == 0, daemon.log_text()

    blocks = audit_actions(state, "block")
    blocked = Counter(record["source"]["ip"] for record in blocks)
    assert set(blocked) == set(addresses)
    assert set(blocked.values()) == {1}
    assert {record["event"]["outcome"] for record in blocks} == {"success"}
    tickets = [
        json.loads(path.read_text()) for path in (state / "alerts" / "tickets").glob("inc-*.json")
    ]
    assert len(tickets) == sources
    assert {ticket["source_ip"] for ticket in tickets} == set(addresses)
    alerts = audit_actions(state, "alert")
    assert len({record["irwatchd"]["incident_id"] for record in alerts}) == sources
    assert set(json.loads((state / "blocks.json").read_text())) == set(addresses)


class _SilentLog:
    """A logger that drops every event."""

    def __getattr__(self, level: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


@contextmanager
def _file_size_limit(max_bytes: int) -> Iterator[None]:
    """Make writes past `max_bytes` of any file fail with EFBIG, as a full disk fails them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_block_applied_before_failed_record(tmp_path: Path) -> None:
    responder, paths, audit = _responder(
        tmp_path, {"policy": {"low": ["audit", "block"]}, "correlation": []}, started=True
    )
    finding = _finding("192.0.2.77", 0)
    key = dedup_key(finding)
    try:
        assert responder.handle(finding, key=key)
        # blocks.json (one block) fits below the limit; the batch's audit records do not.
        with _file_size_limit(paths.audit_log.stat().st_size + 600), pytest.raises(OSError):
            responder.flush()
        saved = json.loads(paths.blocks.read_text())
        assert list(saved) == ["192.0.2.77"], "the block was applied and saved first"
        assert audit_actions(paths.root, "block") == []

        # The daemon reads the line again after a failed write: the finding is skipped, and
        # the records the failed write kept are written by the next flush.
        assert not responder.handle(finding, key=key)
        responder.flush()
        responder.flush()
    finally:
        responder.close()
        audit.close()

    blocks = audit_actions(paths.root, "block")
    assert len(blocks) == 1
    assert blocks[0]["event"]["outcome"] == "success"
    assert blocks[0]["irwatchd"]["incident_id"] == saved["192.0.2.77"]["incident_id"]
    findings = [r for r in read_audit(paths.root) if r.get("event", {}).get("kind") == "alert"]
    assert len(findings) == 1, "the finding was recorded twice or not at all"


def test_evicted_incident_ticket_written_closed(tmp_path: Path) -> None:
    responder, paths, audit = _responder(
        tmp_path, {"policy": {"low": ["audit", "ticket"]}, "correlation": []}
    )
    responder.incidents.max_open = 2
    addresses = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    try:
        for offset, address in enumerate(addresses):
            responder.handle(_finding(address, offset))
        responder.flush()
    finally:
        responder.close()
        audit.close()

    tickets = [json.loads(path.read_text()) for path in paths.tickets.glob("inc-*.json")]
    status = {ticket["source_ip"]: ticket["status"] for ticket in tickets}
    assert status == {"192.0.2.1": "closed", "192.0.2.2": "open", "192.0.2.3": "open"}
    closes = audit_actions(paths.root, "incident_close")
    assert [record["source"]["ip"] for record in closes] == ["192.0.2.1"]


def test_files_written_after_failed_record(tmp_path: Path) -> None:
    responder, paths, audit = _responder(
        tmp_path, {"policy": {"low": ["audit", "ticket", "alert"]}, "correlation": []},
        started=True,
    )  # fmt: skip
    finding = _finding("192.0.2.88", 0)
    try:
        responder.handle(finding)
        with _file_size_limit(paths.audit_log.stat().st_size + 100), pytest.raises(OSError):
            responder.flush()
        assert not list(paths.tickets.glob("*.json")), "a ticket was written before its record"
        # The daemon reads the line again, and the finding only updates its incident.
        responder.handle(finding)
        responder.flush()
    finally:
        responder.close()
        audit.close()

    tickets = [json.loads(path.read_text()) for path in paths.tickets.glob("*.json")]
    alerts = audit_actions(paths.root, "alert")
    assert [ticket["source_ip"] for ticket in tickets] == ["192.0.2.88"]
    assert len(alerts) == 1, "the new incident's alert was lost with the failed write"
    assert alerts[0]["irwatchd"]["incident_id"] == tickets[0]["id"]


def test_failed_alert_and_ticket_written_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytest captures output in files, which the size limit below would also stop; the
    # daemon's own log output drops such lines instead (`irwatchd.logs.TolerantStream`).
    monkeypatch.setattr(responder_module, "log", _SilentLog())
    monkeypatch.setattr(tickets_module, "log", _SilentLog())
    responder, paths, audit = _responder(
        tmp_path, {"policy": {"low": ["audit", "ticket", "alert"]}, "correlation": []}
    )
    try:
        responder.handle(_finding("192.0.2.99", 0))
        responder.flush_records()
        # New files cannot grow past 16 bytes, as on a full disk; the audit log is larger.
        with _file_size_limit(16), pytest.raises(OSError):
            responder.write_files()
        assert audit_actions(paths.root, "alert") == []
        responder.write_files()
    finally:
        responder.close()
        audit.close()

    alerts = audit_actions(paths.root, "alert")
    tickets = audit_actions(paths.root, "ticket")
    assert len(alerts) == 1, "the alert that failed was not written again"
    assert len(tickets) == 1, "the ticket that failed was not written again"
    assert len(list(paths.alerts.glob("*.json"))) == 1
