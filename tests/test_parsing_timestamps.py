"""Each timestamp and header form reaches the same rule with the same attribution."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from irwatchd.config import load_config
from irwatchd.detection.engine import Detector
from irwatchd.detection.loader import build_detector
from irwatchd.parsing import syslog
from irwatchd.parsing.dispatch import guess_source_type, parse_line
from irwatchd.parsing.timestamps import parse_bsd, parse_clf, parse_iso8601
from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2024, 3, 9, 12, 0, tzinfo=UTC)
MESSAGE = "Failed password for root from 203.0.113.7 port 50022 ssh2"


@pytest.fixture(scope="module")
def detector() -> Detector:
    return build_detector(load_config(ROOT / "etc" / "irwatchd.yaml"))


JOURNALD = json.dumps(
    {
        "MESSAGE": MESSAGE,
        "__REALTIME_TIMESTAMP": "1709910859250000",
        "_HOSTNAME": "bastion",
        "SYSLOG_IDENTIFIER": "sshd",
        "_PID": "811",
    }
)

CASES = [
    (
        "traditional",
        f"Mar  8 15:14:19 bastion sshd[811]: {MESSAGE}",
        datetime(2024, 3, 8, 15, 14, 19, tzinfo=UTC),
    ),
    (
        "traditional with fraction",
        f"Mar  8 15:14:19.250000 bastion sshd[811]: {MESSAGE}",
        datetime(2024, 3, 8, 15, 14, 19, 250000, tzinfo=UTC),
    ),
    (
        "traditional with year",
        f"Mar  8 2023 15:14:19 bastion sshd[811]: {MESSAGE}",
        datetime(2023, 3, 8, 15, 14, 19, tzinfo=UTC),
    ),
    (
        "rfc 5424",
        f"<38>1 2024-03-08T15:14:19.250+01:00 bastion sshd 811 - - {MESSAGE}",
        datetime(2024, 3, 8, 15, 14, 19, 250000, tzinfo=timezone(timedelta(hours=1))),
    ),
    (
        "rfc 5424 with structured data",
        f'<38>1 2024-03-08T14:14:19Z bastion sshd 811 ID47 [origin ip="192.0.2.66"] {MESSAGE}',
        datetime(2024, 3, 8, 14, 14, 19, tzinfo=UTC),
    ),
    (
        "iso 8601 with offset",
        f"2024-03-08T15:14:19.250+02:00 bastion sshd[811]: {MESSAGE}",
        datetime(2024, 3, 8, 13, 14, 19, 250000, tzinfo=UTC),
    ),
    (
        "iso 8601 utc",
        f"2024-03-08T13:14:19Z bastion sshd[811]: {MESSAGE}",
        datetime(2024, 3, 8, 13, 14, 19, tzinfo=UTC),
    ),
    (
        "traditional with year after the time",
        f"Mar  8 15:14:19.123 2023 bastion sshd[811]: {MESSAGE}",
        datetime(2023, 3, 8, 15, 14, 19, 123000, tzinfo=UTC),
    ),
    (
        "iso 8601 with space and nanoseconds",
        f"2024-03-08 15:14:19.123456789+05:30 bastion sshd[811]: {MESSAGE}",
        datetime(2024, 3, 8, 9, 44, 19, 123456, tzinfo=UTC),
    ),
    ("journald json", JOURNALD, datetime(2024, 3, 8, 15, 14, 19, 250000, tzinfo=UTC)),
]


@pytest.mark.parametrize(("name", "line", "moment"), CASES, ids=[case[0] for case in CASES])
def test_timestamp_form_parses(name: str, line: str, moment: datetime) -> None:
    record = parse_line(line, "auto", NOW, line_number=1)
    assert record.time == moment


@pytest.mark.parametrize(("name", "line", "moment"), CASES, ids=[case[0] for case in CASES])
def test_timestamp_form_detected(
    detector: Detector, name: str, line: str, moment: datetime
) -> None:
    findings = detector.detect([parse_line(line, "auto", NOW, line_number=1)])
    assert [finding.rule_id for finding in findings] == ["sshd-failed-auth"]
    assert findings[0].source_ip == "203.0.113.7"
    assert findings[0].user == "root"


def test_december_line_read_in_january_is_last_year() -> None:
    record = parse_line(
        f"Dec 31 23:59:58 bastion sshd[811]: {MESSAGE}", "auto", datetime(2025, 1, 1, tzinfo=UTC)
    )
    assert record.time == datetime(2024, 12, 31, 23, 59, 58, tzinfo=UTC)


def test_auditd_record_is_syslog_type() -> None:
    line = 'type=EXECVE msg=audit(1710094063.618:74768): argc=3 a0="chmod" a1="u+s" a2="/tmp/x"'
    assert guess_source_type(line) == "syslog"


def test_auditd_record_detected(detector: Detector) -> None:
    line = 'type=EXECVE msg=audit(1710094063.618:74768): argc=3 a0="chmod" a1="u+s" a2="/tmp/x"'
    findings = detector.detect([parse_line(line, "auto", NOW, line_number=1)])
    assert [finding.category for finding in findings] == ["privilege_escalation"]


def test_access_log_overlong_utf8_is_decoded() -> None:
    line = (
        '192.0.2.5 - - [05/Mar/2024:09:20:03 +0000] "GET /f?x=..%c0%af..%c0%afetc%c0%afpasswd '
        'HTTP/1.1" 200 10 "-" "Mozilla/5.0"'
    )
    record = parse_line(line, "access_log", NOW)
    assert "../../etc/passwd" in record.view


def test_access_log_fullwidth_dots_are_folded() -> None:
    line = (
        '192.0.2.5 - - [05/Mar/2024:09:20:03 +0000] "GET /f?x=%EF%BC%8E%EF%BC%8E%E2%88%95etc '
        'HTTP/1.1" 200 10 "-" "Mozilla/5.0"'
    )
    assert "../etc" in parse_line(line, "access_log", NOW).view


def test_access_log_multiline_sql_comment_is_removed() -> None:
    line = (
        '192.0.2.5 - - [05/Mar/2024:09:20:03 +0000] "GET /f?id=1%20UNION/*a%0d%0ab*/SELECT%201 '
        'HTTP/1.1" 200 10 "-" "Mozilla/5.0"'
    )
    assert "union select 1" in parse_line(line, "access_log", NOW).view


@pytest.mark.parametrize(
    "now",
    [
        datetime(2026, 12, 4, 12, 0, 30, tzinfo=UTC),
        # The year guess changes in the middle of the minute 12:00 on 5 December.
        datetime(2026, 12, 4, 11, 59, 30, tzinfo=UTC),
        # A January run reads December lines as last year's and 29 February has no year.
        datetime(2027, 1, 2, 0, 0, 0, 500_000, tzinfo=UTC),
        datetime(2025, 2, 27, 23, 59, 59, tzinfo=UTC),
    ],
)
def test_stamp_times_match_parse_bsd(now: datetime) -> None:
    rng = random.Random(31)
    months = ["Jan", "Feb", "Mar", "Dec", "Xyz", "dec", "DEC"]
    days = [" 1", "01", " 4", " 5", "29", "30", "31", "32", " 0", "\u0663\u0663", "1 ", "  "]
    clocks = ["00:00:00", "11:59:59", "12:00:00", "12:00:29", "12:00:31", "12:00:59", "23:59:60"]
    clocks += ["24:00:00", "12:60:00", "1:00:00 ", "12:00:\u0663\u0663", "12-00-00", "12:00:0 "]
    stamps = []
    for _ in range(20_000):
        stamp = f"{rng.choice(months)} {rng.choice(days)} {rng.choice(clocks)} "
        if rng.random() < 0.1:
            chars = list(stamp)
            chars[rng.randrange(len(chars))] = rng.choice(" :0a\t\u00e9")
            stamp = "".join(chars)
        stamps.append(stamp[: rng.choice([16, 16, 16, 15, 12])])
    times = syslog.StampTimes(now)
    accepted = 0
    for stamp in stamps:
        split = syslog.split_stamp_prefix(stamp)
        expected = None if split is None else parse_bsd(split[0], split[1], split[2], None, now)
        assert times.time_of(stamp) == (split is not None, expected), repr(stamp)
        accepted += split is not None and expected is not None
    assert accepted > 1000, "too few stamps had a time to compare"


@pytest.mark.parametrize(
    "stamp",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0999-06-01T00:00:00Z"],
)
def test_times_near_datetime_limits_are_unparseable(stamp: str) -> None:
    assert parse_iso8601(stamp) is None
    assert parse_clf("01/Jan/0001:00:00:00 +0100") is None


def test_scan_survives_times_near_datetime_limits(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text(
        "0001-01-01T00:00:00+01:00 h sshd[811]: Failed password for root from 192.0.2.10 "
        "port 22 ssh2\n"
        "9999-12-31T23:59:59-01:00 h sshd[812]: Failed password for root from 192.0.2.11 "
        "port 22 ssh2\n"
    )

    result = run_cli("scan", "--state-dir", str(tmp_path / "state"), str(log))
    detected = run_cli("detect", str(log))

    assert result.returncode == 0, result.stderr
    assert detected.returncode == 0, detected.stderr
    rows = [json.loads(line) for line in detected.stdout.splitlines()]
    assert [row["time"] for row in rows] == [None, None]
    assert [row["source_ip"] for row in rows] == ["192.0.2.10", "192.0.2.11"]
