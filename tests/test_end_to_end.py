"""The daemon as a subprocess: lines written to watched logs become audited responses."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
from pathlib import Path

import pytest

from tests.helpers import (
    CONFIG,
    CORPUS,
    ROOT,
    append_lines,
    audit_actions,
    corpus_lines,
    running_daemon,
    wait_until,
)

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS}")


def _brute_force_lines() -> tuple[str, list[str]]:
    """Return one source address and the corpus's failed-password lines from it."""
    failures = corpus_lines(
        "auth.jsonl",
        lambda item: item["label"] == "failed_login" and "Failed password" in item["line"],
    )
    by_source: dict[str, list[str]] = {}
    for item in failures:
        by_source.setdefault(item["ip"], []).append(item["line"])
    source, lines = max(by_source.items(), key=lambda pair: len(pair[1]))
    return source, lines[:6]


def test_attack_lines_produce_audited_responses(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    auth, access = logs / "auth.log", logs / "access.log"
    state = tmp_path / "state"
    source, failures = _brute_force_lines()
    log4shell = corpus_lines(
        "web.jsonl", lambda item: item["label"] == "log4shell" and "${jndi:" in item["line"]
    )[0]
    with running_daemon(state, [f"{auth}:syslog", f"{access}:access_log"]):
        append_lines(auth, failures)
        append_lines(access, [log4shell["line"]])
        wait_until(lambda: any(r["irwatchd"]["category"] == "brute_force"
                               for r in audit_actions(state, "finding")))  # fmt: skip
        wait_until(lambda: audit_actions(state, "forensics"))

    findings = audit_actions(state, "finding")
    failed = [r for r in findings if r["irwatchd"]["category"] == "failed_login"]
    assert len(failed) == len(failures)
    first = failed[0]
    assert first["event"]["original"] == failures[0]
    assert first["log"]["file"]["path"] == str(auth)
    assert first["log"]["offset"] == 0
    assert first["source"]["ip"] == source
    assert first["irwatchd"]["severity"] == "low"
    assert failed[1]["log"]["offset"] == len(failures[0].encode()) + 1

    brute = [r for r in findings if r["irwatchd"]["category"] == "brute_force"]
    assert len(brute) == 1, "one brute_force finding per incident, not one per line"
    assert brute[0]["irwatchd"]["severity"] == "high"
    assert brute[0]["source"]["ip"] == source

    blocks = [r for r in audit_actions(state, "block") if r["event"]["outcome"] == "success"]
    assert {r["source"]["ip"] for r in blocks} == {source, log4shell["ip"]}
    stored = json.loads((state / "blocks.json").read_text())
    assert set(stored) == {source, log4shell["ip"]}

    jndi = [r for r in findings if r["irwatchd"]["category"] == "jndi_injection"]
    assert len(jndi) == 1
    assert jndi[0]["irwatchd"]["severity"] == "critical"
    assert jndi[0]["source"]["ip"] == log4shell["ip"]

    tickets = {
        path.name: json.loads(path.read_text())
        for path in (state / "alerts" / "tickets").glob("*.json")
    }
    brute_ticket = next(t for t in tickets.values() if t["category"] == "brute_force")
    assert brute_ticket["source_ip"] == source
    assert brute_ticket["severity"] == "high"
    assert brute_ticket["first_seen"] <= brute_ticket["last_seen"]
    assert brute_ticket["evidence"], "the ticket carries the evidence lines"

    manifest_record = audit_actions(state, "forensics")[0]
    manifest_path = Path(manifest_record["irwatchd"]["manifest_path"])
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["files"]:
        copied = manifest_path.parent / entry["name"]
        assert hashlib.sha256(copied.read_bytes()).hexdigest() == entry["sha256"]
        assert copied.stat().st_mode & 0o222 == 0, "forensic copies are read-only"
    assert log4shell["line"] in (manifest_path.parent / manifest["files"][0]["name"]).read_text()


def test_broken_config_on_sighup_keeps_old_one(tmp_path: Path) -> None:
    config_dir = tmp_path / "etc"
    shutil.copytree(ROOT / "etc", config_dir)
    config = config_dir / "irwatchd.yaml"
    log = tmp_path / "auth.log"
    state = tmp_path / "state"
    source, failures = _brute_force_lines()
    with running_daemon(state, [f"{log}:syslog"], config=config) as daemon:
        config.write_text("policy:\n  high: [explode]\n")
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: audit_actions(state, "reload"))
        reload_record = audit_actions(state, "reload")[0]
        assert reload_record["event"]["outcome"] == "failure"
        assert "policy.high" in reload_record["irwatchd"]["error"]
        assert "reload_failed" in daemon.log_text()
        append_lines(log, failures[:1])
        wait_until(lambda: audit_actions(state, "finding"))
        assert daemon.process.poll() is None
    finding = audit_actions(state, "finding")[0]
    assert finding["source"]["ip"] == source


def test_audit_chain_links_each_record(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    state = tmp_path / "state"
    _, failures = _brute_force_lines()
    with running_daemon(state, [f"{log}:syslog"]):
        append_lines(log, failures)
        wait_until(lambda: len(audit_actions(state, "finding")) >= len(failures))
    raw_lines = (state / "audit.jsonl").read_bytes().splitlines()
    previous = "0" * 64
    for number, raw in enumerate(raw_lines, start=1):
        chain = json.loads(raw)["irwatchd"]["audit"]
        assert chain["seq"] == number
        assert chain["prev_sha256"] == previous
        previous = hashlib.sha256(raw).hexdigest()


def test_default_config_passes_check() -> None:
    assert CONFIG.is_file()
