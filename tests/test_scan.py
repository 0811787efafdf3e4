"""`irwatchd scan`: one pass over old logs, compressed ones included, with a report of that pass."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, audit_actions, fill, run_cli, run_without_override

SAMPLES = ROOT / "samples"


def _report(state: Path) -> dict:
    reports = sorted((state / "reports" / "incidents").glob("incident-report-*.json"))
    assert len(reports) == 1
    return json.loads(reports[0].read_text())


def test_scan_reads_folders_recursively_and_compressed(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    (logs / "nginx").mkdir(parents=True)
    (logs / "auth.log").write_bytes((SAMPLES / "auth.log").read_bytes())
    with gzip.open(logs / "nginx" / "access.log.1.gz", "wb") as handle:
        handle.write((SAMPLES / "access.log").read_bytes())
    (logs / "wtmp").write_bytes(b"\x00\x01\x02\x03" * 100)
    (logs / "old.log.zst").write_bytes(b"(\xb5/\xfd not really zstd")
    state = tmp_path / "state"
    result = run_cli("scan", "--state-dir", str(state), str(logs))
    assert result.returncode == 0, result.stderr
    report = _report(state)
    entries = {Path(entry["path"]).name: entry for entry in report["files"]}
    assert entries["auth.log"]["lines"] == 60
    assert entries["access.log.1.gz"]["lines"] == 40
    assert entries["wtmp"]["skipped"] == "binary"
    assert entries["old.log.zst"]["skipped"] == "unsupported compression"
    counts = report["counts"]["by_category"]
    assert counts["brute_force"] == 1
    assert counts["jndi_injection"] >= 1
    assert sum(counts.values()) == report["findings"]
    assert sum(report["counts"]["by_severity"].values()) == report["findings"]
    collection = json.loads(Path(report["collection"]).read_text())
    assert len(collection["files"]) == 4


def test_scan_report_counts_only_this_pass(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = run_cli("scan", "--state-dir", str(state), str(SAMPLES / "access.log"))
    assert first.returncode == 0, first.stderr
    for report in (state / "reports" / "incidents").glob("*.json"):
        report.rename(tmp_path / report.name)
    second = run_cli("scan", "--state-dir", str(state), str(SAMPLES / "auth.log"))
    assert second.returncode == 0, second.stderr
    report = _report(state)
    assert set(report["counts"]["by_category"]) == {"failed_login", "brute_force"}
    assert all(
        incident["category"] in ("failed_login", "brute_force") for incident in report["incidents"]
    )
    brute_sources = {i["source_ip"] for i in report["incidents"] if i["category"] == "brute_force"}
    assert len(brute_sources) == 1
    assert report["blocks_simulated"] == sorted(brute_sources)


def test_scan_blocks_stay_out_of_daemon_state(tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = run_cli("scan", "--state-dir", str(state), str(SAMPLES / "auth.log"))
    assert result.returncode == 0, result.stderr
    report = _report(state)
    (scan_blocks,) = (state / "reports" / "scans").glob("*/blocks.json")

    assert report["blocks_simulated"]
    assert sorted(json.loads(scan_blocks.read_text())) == report["blocks_simulated"]
    assert "address_blocked" not in result.stderr, "reads as if an address were blocked"
    # A daemon on this state would apply the blocks and take over the incidents.
    assert sorted(path.name for path in state.iterdir()) == ["reports"]
    assert report["scan_folder"] == str(scan_blocks.parent)
    assert list((scan_blocks.parent / "alerts" / "tickets").glob("inc-*.json"))
    assert (scan_blocks.parent / "audit.jsonl").stat().st_size > 0


def test_scan_missing_path_exits_66(tmp_path: Path) -> None:
    result = run_cli("scan", "--state-dir", str(tmp_path / "state"), str(tmp_path / "absent.log"))
    assert result.returncode == 66
    assert "absent.log" in result.stderr


def test_scan_report_survives_audit_rotation(tmp_path: Path) -> None:
    config_dir = tmp_path / "etc"
    shutil.copytree(ROOT / "etc", config_dir)
    config = config_dir / "irwatchd.yaml"
    document = yaml.safe_load(config.read_text())
    document["audit"] = {"max_bytes": 4096, "keep_files": 50}
    config.write_text(json.dumps(document))  # JSON is YAML
    state = tmp_path / "state"
    result = run_cli(
        "scan", "-c", str(config), "--state-dir", str(state), str(SAMPLES / "auth.log")
    )
    assert result.returncode == 0, result.stderr
    (scan_folder,) = (state / "reports" / "scans").iterdir()
    assert len(list(scan_folder.glob("audit.jsonl.*"))) >= 2, "the audit log rotated"
    report = _report(state)
    assert report["counts"]["by_category"]["brute_force"] == 1
    assert report["counts"]["by_category"]["failed_login"] >= 5
    assert len(report["blocks_simulated"]) == 1


def test_scan_report_bytes_match_json_writer(tmp_path: Path) -> None:
    state = tmp_path / "state"
    logs = [str(SAMPLES / "auth.log"), str(SAMPLES / "access.log")]
    result = run_cli("scan", "--state-dir", str(state), *logs)
    assert result.returncode == 0, result.stderr
    (path,) = (state / "reports" / "incidents").glob("incident-report-*.json")
    written = path.read_text()
    report = json.loads(written)
    assert len(report["incidents"]) >= 2

    # The report is written piece by piece; it must be what one json.dump would write.
    assert written == json.dumps(report, indent=2) + "\n"


def test_scan_report_with_no_incidents(tmp_path: Path) -> None:
    quiet = tmp_path / "quiet.log"
    quiet.write_text("Dec  1 00:00:00 host cron[1]: nothing to see\n")
    state = tmp_path / "state"
    result = run_cli("scan", "--state-dir", str(state), str(quiet))
    assert result.returncode == 0, result.stderr
    (path,) = (state / "reports" / "incidents").glob("incident-report-*.json")
    written = path.read_text()

    assert json.loads(written)["incidents"] == []
    assert written == json.dumps(json.loads(written), indent=2) + "\n"


def test_scan_report_counts_cut_lines(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text((SAMPLES / "auth.log").read_text() + "B" * 70_000 + "\n")
    state = tmp_path / "state"

    result = run_cli("scan", "--state-dir", str(state), str(log))
    (entry,) = _report(state)["files"]

    assert result.returncode == 0, result.stderr
    assert entry["truncated_lines"] == 1
    assert entry["first_truncated_line"] == 61
    assert entry["lines"] == 61
    assert "scan_lines_truncated" in result.stderr


def test_scan_keeps_findings_before_damage(tmp_path: Path) -> None:
    # A rotated log cut short: the lines decoded before the cut are analysed.
    whole = gzip.compress((SAMPLES / "auth.log").read_bytes())
    cut = tmp_path / "auth.log.2.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    state = tmp_path / "state"

    result = run_cli("scan", "--state-dir", str(state), str(cut))
    report = _report(state)
    (entry,) = report["files"]

    assert result.returncode == 0, result.stderr
    assert entry["skipped"].startswith("damaged: ")
    assert entry["lines"] > 0
    assert report["findings"] > 0


def test_scan_skips_unreadable_file_and_goes_on(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    shutil.copy(SAMPLES / "auth.log", logs / "auth.log")
    locked = logs / "secure.log"
    locked.write_text("x\n")
    locked.chmod(0)
    state = tmp_path / "state"

    result = run_without_override("scan", "--state-dir", str(state), str(logs))
    report = _report(state)

    assert result.returncode == 0, result.stderr
    assert [entry.get("skipped") for entry in report["files"]] == [
        None,
        "unreadable: Permission denied",
    ]
    assert report["findings"] > 0


def test_scan_report_lists_closed_incidents(tmp_path: Path) -> None:
    """An incident quiet for the idle hour, in the log's clock, closes and stays in the report."""
    first = [
        "Dec  1 10:00:00 web sshd[101]: Failed password for root from 192.0.2.7 port 4000 ssh2",
        "Dec  1 10:00:09 web sshd[102]: Failed password for invalid user jürgen from 192.0.2.7 port 4001 ssh2",
    ]
    later = "Dec  1 12:30:00 web sshd[103]: Failed password for root from 192.0.2.7 port 4002 ssh2"
    burst = [
        f"Dec  1 12:31:0{second} web sshd[2{second}]: Failed password for admin from "
        f"203.0.113.5 port 5{second} ssh2"
        for second in range(5)
    ]
    log = tmp_path / "auth.log"
    log.write_text("\n".join([*first, later, *burst]) + "\n", encoding="utf-8")
    state = tmp_path / "state"
    result = run_cli("scan", "--state-dir", str(state), str(log))
    assert result.returncode == 0, result.stderr
    incidents = _report(state)["incidents"]

    seven = [i for i in incidents if i["source_ip"] == "192.0.2.7"]
    assert [(i["status"], i["count"]) for i in seven] == [("closed", 2), ("open", 1)]
    assert seven[0]["closed_reason"] == "idle"
    assert seven[1]["previous_id"] == seven[0]["id"]
    assert [item["line"] for item in seven[0]["evidence"]] == first
    assert [item["line"] for item in seven[1]["evidence"]] == [later]
    offsets = [item["offset"] for item in seven[0]["evidence"]]
    assert offsets == [0, len(first[0].encode()) + 1]
    (brute,) = [i for i in incidents if i["category"] == "brute_force"]
    assert [item["line"] for item in brute["evidence"]] == burst


def test_report_incident_indent_matches_json_module() -> None:
    from irwatchd.scan import _indented

    for document in (
        {"line": 'caf\u00e9 \u2028 \x00 " \\', "empty": [], "nested": {"a": [1, {}]}},
        {"line": "lone \udcff surrogate"},
    ):
        assert _indented(json.dumps(document).encode()) == json.dumps(document, indent=2)


def _leave_free(filesystem: Path, free_bytes: int) -> None:
    """Fill `filesystem`, then give back `free_bytes` of it."""
    filler = fill(filesystem)
    os.truncate(filler, max(0, filler.stat().st_size - free_bytes))


def _auth_lines(count: int) -> str:
    return "".join(
        f"Dec  1 10:{second // 60 % 60:02}:{second % 60:02} web sshd[{1000 + second}]: Failed "
        f"password for root from 192.0.2.{second % 200 + 1} port 4000 ssh2\n"
        for second in range(count)
    )


@pytest.mark.parametrize("free_kib", [40, 600])
def test_scan_full_disk_exits_73(tmp_path: Path, tiny_filesystem: Path, free_kib: int) -> None:
    """40 KiB: the copy of the log does not fit; 600 KiB: it does, and the audit log fills up."""
    log = tmp_path / "auth.log"
    log.write_text(_auth_lines(3000))
    state = tiny_filesystem / "state"
    state.mkdir()
    _leave_free(tiny_filesystem, free_kib << 10)
    result = run_cli("scan", "--state-dir", str(state), str(log))

    assert result.returncode == 73, result.stderr
    assert "Traceback" not in result.stderr
    assert "No space left on device" in result.stderr
    assert "--state-dir" in result.stderr
    assert "damaged" not in result.stderr


def _sqli(address: str, clock: str) -> str:
    return (
        f'{address} - - [05/Mar/2024:{clock} +0000] "GET /news.php?article=-14%20union%20select'
        '%201%2Cuser%28%29%2C3 HTTP/1.1" 404 123 "-" "Mozilla/5.0"\n'
    )


def test_scan_reads_rotations_oldest_first(tmp_path: Path) -> None:
    # Three failures at the end of auth.log.1 and two at the start of auth.log, then quiet
    # hours: one brute force, whose window spans the rotation.
    logs = tmp_path / "logs"
    logs.mkdir()
    line = "Dec  1 {} web sshd[{}]: Failed password for root from {} port 22 ssh2\n"
    older = [line.format(f"06:2{n}:00", 100 + n, "203.0.113.9") for n in range(3)]
    newer = [line.format(f"06:2{n}:00", 200 + n, "203.0.113.9") for n in (5, 6)]
    newer += [line.format(f"{7 + n:02}:00:00", 300 + n, f"192.0.2.{n + 1}") for n in range(4)]
    with gzip.open(logs / "auth.log.2.gz", "wt") as handle:
        handle.write(line.format("05:00:00", 99, "192.0.2.200"))
    (logs / "auth.log.1").write_text("".join(older))
    (logs / "auth.log").write_text("".join(newer))
    state = tmp_path / "state"
    result = run_cli("scan", "--state-dir", str(state), str(logs))
    assert result.returncode == 0, result.stderr
    report = _report(state)

    assert [Path(entry["path"]).name for entry in report["files"]] == [
        "auth.log.2.gz", "auth.log.1", "auth.log",
    ]  # fmt: skip
    assert report["counts"]["by_category"]["brute_force"] == 1


def test_scan_report_incidents_once_with_actions(tmp_path: Path) -> None:
    # Two web logs with lines of the same second: the incident that the first log opens
    # closes at its later line, and the second log opens another one for the same key.
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.access.log").write_text(
        _sqli("198.51.100.9", "09:20:03") + _sqli("203.0.113.7", "11:20:03")
    )
    (logs / "b.access.log").write_text(
        _sqli("198.51.100.9", "09:20:03") + _sqli("198.51.100.9", "09:20:04")
    )
    state = tmp_path / "state"
    result = run_cli("scan", "--state-dir", str(state), str(logs))
    assert result.returncode == 0, result.stderr
    report = _report(state)
    incidents = report["incidents"]
    ids = [incident["id"] for incident in incidents]

    assert len(ids) == len(set(ids)), "an incident is listed twice"
    audited = [
        record["irwatchd"]["incident_id"] for record in audit_actions(
            Path(report["scan_folder"]), "finding"
        )
    ]  # fmt: skip
    counts = {incident["id"]: incident["count"] for incident in incidents}
    assert {key: audited.count(key) for key in set(audited)} == counts
    nine = [incident for incident in incidents if incident["source_ip"] == "198.51.100.9"]
    assert [incident["status"] for incident in nine] == ["closed", "open"]
    assert nine[1]["previous_id"] == nine[0]["id"]
    # The closed incident was blocked after its only finding: the report shows it, as its
    # ticket does. The block still held when the second incident opened.
    tickets = Path(report["scan_folder"]) / "alerts" / "tickets"
    for incident in nine:
        ticket = json.loads((tickets / f"{incident['id']}.json").read_text())
        assert incident["actions_done"] == ticket["actions_done"]
    assert nine[0]["actions_done"] == ["block_audited", "block_blocked"]
    assert report["blocks_simulated"] == ["198.51.100.9", "203.0.113.7"]


def test_scan_blocks_not_rate_capped(tmp_path: Path) -> None:
    # More new blocks than the default cap of 60 a minute, read in well under a minute.
    log = tmp_path / "access.log"
    log.write_text("".join(_sqli(f"2001:db8::{n:x}", "09:20:03") for n in range(1, 101)))
    state = tmp_path / "state"
    result = run_cli("scan", "--state-dir", str(state), str(log))
    assert result.returncode == 0, result.stderr
    assert len(_report(state)["blocks_simulated"]) == 100


def test_scan_non_utf8_file_name(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / os.fsdecode(b"auth\xff.log")).write_text(_auth_lines(6))
    state = tmp_path / "state"
    result = run_cli("scan", "--state-dir", str(state), str(logs))
    assert result.returncode == 0, result.stderr
    report = _report(state)
    assert report["lines_read"] == 6
    verified = run_cli("audit", "verify", "--state-dir", report["scan_folder"])
    assert verified.returncode == 0, verified.stdout + verified.stderr
    started = audit_actions(Path(report["scan_folder"]), "scan_started")
    assert started[0]["irwatchd"]["files"] == [str(logs / "auth\\xff.log")]


def test_scan_correlates_concurrent_logs(tmp_path: Path) -> None:
    # Two hosts' logs of one day, read one after the other: the failures of one source on both
    # make one brute force, although the first log goes on to later hours before the second.
    logs = tmp_path / "logs"
    logs.mkdir()
    line = "Dec  1 {} {} sshd[{}]: Failed password for root from {} port 22 ssh2\n"
    first = [line.format(f"10:00:0{n}", "web1", 100 + n, "203.0.113.9") for n in range(3)]
    first.append(line.format("23:00:00", "web1", 200, "192.0.2.1"))
    second = [line.format(f"10:00:0{n}", "web2", 300 + n, "203.0.113.9") for n in (5, 6)]
    (logs / "web1.log").write_text("".join(first))
    (logs / "web2.log").write_text("".join(second))
    state = tmp_path / "state"
    result = run_cli("scan", "--state-dir", str(state), str(logs))
    assert result.returncode == 0, result.stderr
    assert _report(state)["counts"]["by_category"]["brute_force"] == 1


def test_scan_leaves_confirmer_unbuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The Confirmer's copy of the compiled rules would count against a scan's peak memory.
    # The handler runs in this process, without `main` reconfiguring the logging.
    from irwatchd.cli.main import build_parser
    from irwatchd.detection import batch

    def reject(detector: object) -> None:
        raise AssertionError("scan built the C++ Confirmer")

    monkeypatch.setattr(batch, "native_confirmer", reject)
    state = tmp_path / "state"
    args = build_parser("scan").parse_args(
        ["scan", "--state-dir", str(state), str(SAMPLES / "auth.log")]
    )
    args.config_path = None

    code = int(args.handler(args))

    assert code == 0
    assert _report(state)["counts"]["by_category"]["brute_force"] == 1
