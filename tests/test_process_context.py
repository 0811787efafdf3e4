"""Attribution across the lines of one sshd process, and its limits."""

from __future__ import annotations

import io
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from irwatchd.config import load_config
from irwatchd.detection.batch import detect_file
from irwatchd.detection.loader import build_detector
from irwatchd.detection.process_context import (
    LogTime,
    ProcessContext,
    ProcessKey,
    attribute_stream,
)
from irwatchd.detection.rows import attribute_group
from tests.helpers import CONFIG, run_cli

INVALID = "Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 192.0.2.1"
PREAUTH = (
    "Dec 10 06:55:46 LabSZ sshd[24200]: input_userauth_request: invalid user webmaster [preauth]"
)
OTHER_PID = (
    "Dec 10 06:55:47 LabSZ sshd[24999]: input_userauth_request: invalid user admin [preauth]"
)
LATE = "Dec 10 07:30:00 LabSZ sshd[24200]: input_userauth_request: invalid user late [preauth]"
CHECK_PASS = "Jun 14 15:16:02 combo sshd(pam_unix)[19937]: check pass; user unknown"
RHOST = "Jun 14 15:16:02 combo sshd(pam_unix)[19937]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=198.51.100.4 "


def _detect(tmp_path: Path, lines: list[str]) -> dict[int, str | None]:
    log = tmp_path / "auth.log"
    log.write_text("".join(line + "\n" for line in lines))
    result = run_cli("detect", "--source-type", "syslog", str(log))
    assert result.returncode == 0, result.stderr
    return {row["line"]: row["source_ip"] for row in map(json.loads, result.stdout.splitlines())}


def test_same_process_lends_its_address(tmp_path: Path) -> None:
    sources = _detect(tmp_path, [INVALID, PREAUTH, OTHER_PID])
    assert sources[1] == "192.0.2.1"
    assert sources[2] == "192.0.2.1"
    assert sources[3] is None, "another PID never inherits the address"


def test_address_expires_with_log_time(tmp_path: Path) -> None:
    sources = _detect(tmp_path, [INVALID, LATE])
    assert sources[2] is None


def test_later_line_of_process_fills_earlier_one(tmp_path: Path) -> None:
    sources = _detect(tmp_path, [CHECK_PASS, RHOST])
    assert sources[1] == "198.51.100.4"
    assert sources[2] == "198.51.100.4"


def test_daemon_attributes_by_process(tmp_path: Path) -> None:
    from tests.helpers import append_lines, audit_actions, running_daemon, wait_until

    log = tmp_path / "auth.log"
    state = tmp_path / "state"
    with running_daemon(state, [f"{log}:syslog"]):
        append_lines(log, [INVALID, PREAUTH])
        wait_until(lambda: len(audit_actions(state, "finding")) >= 2)
    findings = audit_actions(state, "finding")
    assert [record["source"]["ip"] for record in findings] == ["192.0.2.1", "192.0.2.1"]


def test_microsecond_times_attribute_as_datetimes() -> None:
    # Ages and gaps on both sides of the 600 s age limit and the 10 s lookahead, to the microsecond.
    start = datetime(2026, 12, 4, 12, tzinfo=UTC)
    first, second, third = ("bastion", "sshd", "811"), ("bastion", "sshd", "812"), ("b", "s", "9")
    rows: list[tuple[ProcessKey | None, int, str | None]] = [
        (first, 0, "192.0.2.1"),
        (first, 600_000_000, None),
        (first, 600_000_001, None),
        (second, 700_000_000, None),
        (None, 705_000_000, None),
        (second, 710_000_000, "192.0.2.2"),
        (third, 720_000_000, None),
        (third, 730_000_001, "192.0.2.3"),
    ]
    processes = [process for process, _, _ in rows]
    addresses = [address for _, _, address in rows]
    datetimes: list[LogTime | None] = [start + timedelta(microseconds=n) for _, n, _ in rows]
    since_epoch = (start - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    microseconds: list[LogTime | None] = [since_epoch + n for _, n, _ in rows]

    expected = attribute_group(processes, datetimes, addresses, ProcessContext())
    attributed = attribute_group(processes, microseconds, addresses, ProcessContext())

    assert attributed == expected
    assert expected[1] == "192.0.2.1", "an address exactly 600 s old still counts"
    assert expected[2] is None, "an address older than 600 s must not count"
    assert expected[3] == "192.0.2.2", "an address exactly 10 s ahead still counts"
    assert expected[6] is None, "an address more than 10 s ahead must not count"


def test_remember_columns_ends_as_remember_many() -> None:
    rng = random.Random(31)
    for max_processes in (1, 3, 10, 50):
        one_by_one = ProcessContext(max_processes=max_processes)
        columns = ProcessContext(max_processes=max_processes)
        for _ in range(200):
            size = rng.randint(0, 40)
            keys: list[ProcessKey | None] = [
                None if rng.random() < 0.1 else ("host", "sshd", str(rng.randint(1, 80)))
                for _ in range(size)
            ]
            addresses = [f"192.0.2.{rng.randint(1, 254)}" for _ in range(size)]
            moments: list[LogTime | None] = [rng.randint(0, 10**9) for _ in range(size)]
            one_by_one.remember_many(zip(keys, addresses, moments, strict=True))  # type: ignore[arg-type]
            columns.remember_columns(keys, addresses, moments)
            if rng.random() < 0.3:
                assert columns.entries() == one_by_one.entries()
        assert columns.entries() == one_by_one.entries()
        assert len(one_by_one.entries()) == max_processes, "the store never filled up"


def test_context_expire_drops_old_entries() -> None:
    # A new PID on every line, one line a second: only the last 600 s of processes can lend
    # an address, so the store keeps those and not `max_processes` of them.
    start = datetime(2026, 12, 4, 12, tzinfo=UTC)
    context = ProcessContext(max_processes=10_000, max_age_seconds=600)
    for second in range(5000):
        key = ("bastion", "sshd", str(10_000 + second))
        context.remember(key, f"192.0.2.{second % 250 + 1}", start + timedelta(seconds=second))
    now = start + timedelta(seconds=4999)
    assert len(context.entries()) == 5000
    context.expire(now)
    assert len(context.entries()) == 601
    assert context.recall(("bastion", "sshd", str(10_000 + 4399)), now) == "192.0.2.150"
    assert context.recall(("bastion", "sshd", str(10_000 + 4398)), now) is None
    # A line back in time by more than the max age no longer finds its process.
    assert context.recall(("bastion", "sshd", "10001"), start + timedelta(seconds=2)) is None


def test_context_expire_after_clock_step_back() -> None:
    # After a clock step back, the entries remembered before it are newer than the new lines:
    # they stay until lines catch up with them, as `recall` would still refuse them.
    start = datetime(2026, 12, 4, 12, tzinfo=UTC)
    context = ProcessContext(max_age_seconds=600)
    context.remember(("h", "sshd", "1"), "192.0.2.1", start)
    context.remember(("h", "sshd", "2"), "192.0.2.2", start - timedelta(hours=1))
    context.expire(start - timedelta(hours=1))
    assert [key for key, _ in context.entries()] == [("h", "sshd", "1"), ("h", "sshd", "2")]
    assert context.recall(("h", "sshd", "2"), start - timedelta(minutes=55)) == "192.0.2.2"


def test_attribute_stream_expires_entries() -> None:
    # 3,000 sshd processes, one a second: the scan's and the daemon's path keeps the last
    # 600 s of them, and still lends the address of a process to its later line.
    lines = [
        f"Dec  4 {second // 3600:02}:{second // 60 % 60:02}:{second % 60:02} bastion "
        f"sshd[{10_000 + second}]: Invalid user u from 192.0.2.{second % 250 + 1} port 22\n"
        for second in range(3000)
    ]
    lines.append(
        "Dec  4 00:49:59 bastion sshd[12999]: input_userauth_request: invalid user u [preauth]\n"
    )
    detector = build_detector(load_config(CONFIG))
    context = ProcessContext()
    stream = io.BytesIO("".join(lines).encode())
    findings = list(attribute_stream(detect_file(detector, stream, "syslog", "x", 4096), context))
    assert len(findings) == 3001
    assert findings[-1].source_ip == "192.0.2.250"
    assert len(context.entries()) == 601
    # The daemon's context serves files whose clocks may differ: `attribute` keeps them all.
    daemon_context = ProcessContext()
    stream.seek(0)
    daemon_context.attribute(list(detect_file(detector, stream, "syslog", "x", 4096)))
    assert len(daemon_context.entries()) == 3000
