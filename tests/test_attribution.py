"""Source attribution: which address a finding names, and that log text cannot move it.

Lines from hosts LabSZ and combo are copied from the loghub OpenSSH_2k.log and Linux_2k.log
samples (https://github.com/logpai/loghub; cite: Zhu et al., "Loghub: A Large Collection of
System Log Datasets for AI-driven Log Analytics", ISSRE 2023), with documentation addresses.
The other lines are synthetic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from irwatchd.config import load_config
from irwatchd.detection.engine import MAX_COUNT, Detector
from irwatchd.detection.finding import Finding
from irwatchd.detection.loader import build_detector
from irwatchd.parsing.dispatch import parse_line

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2024, 3, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def detector() -> Detector:
    return build_detector(load_config(ROOT / "etc" / "irwatchd.yaml"))


def detect_one(detector: Detector, line: str, source_type: str = "auto") -> Finding:
    findings = detector.detect([parse_line(line, source_type, NOW, line_number=1)])
    assert len(findings) == 1, findings
    return findings[0]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # A user name that carries a fake "from ADDR port N" before the real one.
        (
            "Mar  8 15:14:19 bastion sshd[811]: Failed password for invalid user a from "
            "192.0.2.66 port 22 ssh2 from 203.0.113.7 port 50022 ssh2",
            "203.0.113.7",
        ),
        (
            "Mar  8 15:14:19 bastion sshd[811]: Failed password for x from 192.0.2.66 port 1 "
            "ssh2: RSA SHA256:abc from 198.51.100.4 port 4022 ssh2",
            "198.51.100.4",
        ),
        (
            "Mar  8 15:14:19 bastion sshd[811]: Invalid user admin from 192.0.2.66 from "
            "198.51.100.5 port 4022",
            "198.51.100.5",
        ),
        (
            "Mar  8 15:14:19 bastion sshd[811]: message repeated 3 times: [ Failed password for "
            "root from 192.0.2.66 port 1 ssh2 from 198.51.100.6 port 2 ssh2]",
            "198.51.100.6",
        ),
        # pam_unix writes rhost= before user=, so a user name holding rhost= is ignored.
        (
            "Mar  8 15:14:19 bastion sshd[811]: pam_unix(sshd:auth): authentication failure; "
            "logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.8  user=x rhost=192.0.2.66",
            "203.0.113.8",
        ),
        (
            'Mar  8 15:14:19 files vsftpd[900]: [a] FAIL LOGIN: Client "192.0.2.66"] FAIL LOGIN:'
            ' Client "198.51.100.9"',
            "198.51.100.9",
        ),
        (
            "Mar  8 15:14:19 router dropbear[900]: Bad password attempt for 'x from 192.0.2.66:1'"
            " from 203.0.113.10:40022",
            "203.0.113.10",
        ),
    ],
)
def test_injected_address_never_moves_source(detector: Detector, line: str, expected: str) -> None:
    assert detect_one(detector, line).source_ip == expected


def test_access_log_source_is_client_field(detector: Detector) -> None:
    line = (
        '192.0.2.5 - - [05/Mar/2024:09:20:03 +0000] "GET /x?from=203.0.113.1%20port%2022'
        '&id=1%20UNION%20SELECT%201 HTTP/1.1" 200 10 "http://198.51.100.1/" '
        '"Mozilla/5.0 (from 198.51.100.2 port 4)"'
    )
    assert detect_one(detector, line, "access_log").source_ip == "192.0.2.5"


def test_nginx_error_log_ignores_forged_client(detector: Detector) -> None:
    line = (
        '2024/03/08 15:14:19 [error] 1234#0: *5 user "x, client: 192.0.2.66, server: a": '
        'password mismatch, client: 198.51.100.80, server: example.com, request: "GET / HTTP/1.1"'
    )
    finding = detect_one(detector, line, "error_log")
    assert finding.source_ip == "198.51.100.80"


def test_apache_error_log_source_is_client_field(detector: Detector) -> None:
    line = (
        "[Fri Mar 08 15:14:19.902022 2024] [auth_basic:error] [pid 1] [client 203.0.113.71:50322] "
        'AH01617: user [client 192.0.2.66:1]: authentication failure for "/": Password Mismatch'
    )
    assert detect_one(detector, line, "error_log").source_ip == "203.0.113.71"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("2001:db8::7", "2001:db8::7"),
        ("2001:DB8:0:0::7", "2001:db8::7"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("::FFFF:198.51.100.3", "198.51.100.3"),
    ],
)
def test_ipv6_and_mapped_addresses(detector: Detector, address: str, expected: str) -> None:
    line = (
        f"Mar  8 15:14:19 bastion sshd[811]: Failed password for root from {address} port 22 ssh2"
    )
    assert detect_one(detector, line).source_ip == expected


def test_rhost_hostname_stays_hostname(detector: Detector) -> None:
    line = (
        "Jun 15 02:04:59 combo sshd(pam_unix)[20882]: authentication failure; logname= uid=0 "
        "euid=0 tty=NODEVssh ruser= rhost=Host-203-0-113-1.Example.NET  user=root"
    )
    assert detect_one(detector, line).source_ip == "host-203-0-113-1.example.net"


@pytest.mark.parametrize(
    "line",
    [
        "Dec 10 06:55:46 LabSZ sshd[24200]: input_userauth_request: invalid user oracle [preauth]",
        "Dec 10 06:55:46 LabSZ sshd[24200]: pam_unix(sshd:auth): check pass; user unknown",
        "Dec 10 08:25:22 LabSZ sshd[24369]: PAM service(sshd) ignoring max retries; 5 > 3",
    ],
)
def test_line_without_address_has_no_source(detector: Detector, line: str) -> None:
    finding = detect_one(detector, line)
    assert finding.category == "failed_login"
    assert finding.source_ip is None


def test_message_repeated_counts_failures(detector: Detector) -> None:
    line = (
        "Dec 10 08:39:59 LabSZ sshd[24408]: message repeated 5 times: [ Failed password for "
        "root from 198.51.100.6 port 50719 ssh2]"
    )
    finding = detect_one(detector, line)
    assert finding.count == 5
    assert finding.user == "root"


def test_pam_more_failures_counts(detector: Detector) -> None:
    line = (
        "Dec 10 08:25:22 LabSZ sshd[24369]: PAM 4 more authentication failures; logname= uid=0 "
        "euid=0 tty=ssh ruser= rhost=203.0.113.5 "
    )
    finding = detect_one(detector, line)
    assert finding.count == 4
    assert finding.source_ip == "203.0.113.5"


def test_forged_huge_repeat_count_is_capped(detector: Detector) -> None:
    line = (
        "Dec 10 08:39:59 LabSZ sshd[24408]: message repeated 99999999999 times: [ Failed "
        "password for root from 198.51.100.6 port 50719 ssh2]"
    )
    assert detect_one(detector, line).count == MAX_COUNT
