"""The systemd files: the commands they run parse, and the settings the docs rely on are set."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from irwatchd.cli.main import build_parser
from tests.helpers import ROOT

UNIT = ROOT / "systemd" / "irwatchd.service"
DROPIN = ROOT / "systemd" / "irwatchd-nftables.conf"

# The specifiers a system service sees (systemd.unit(5), "Specifiers").
SPECIFIERS = {"%E": "/etc", "%S": "/var/lib", "%L": "/var/log"}


def _settings(path: Path) -> dict[str, list[str]]:
    """Return every `Key=value` of a unit file, each key with all its values in order."""
    settings: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key, []).append(value)
    return settings


def _expand(command: str) -> list[str]:
    for specifier, value in SPECIFIERS.items():
        command = command.replace(specifier, value)
    return shlex.split(command)


@pytest.fixture(scope="module")
def unit() -> dict[str, list[str]]:
    return _settings(UNIT)


def test_exec_start_parses(unit: dict[str, list[str]]) -> None:
    [command] = unit["ExecStart"]
    program, *arguments = _expand(command)

    args = build_parser().parse_args(arguments)

    assert program == "/usr/bin/irwatchd"
    assert args.command == "run"
    assert args.config == "/etc/irwatchd/irwatchd.yaml"
    assert args.state_dir == "/var/lib/irwatchd"
    assert not args.daemonize


def test_exec_reload_validates_then_signals(unit: dict[str, list[str]]) -> None:
    check, signal = (_expand(command) for command in unit["ExecReload"])

    args = build_parser().parse_args(check[1:])

    assert args.command == "check"
    assert args.config == "/etc/irwatchd/irwatchd.yaml"
    assert signal == ["/bin/kill", "-HUP", "$MAINPID"]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("Restart", "on-failure"),
        ("User", "irwatchd"),
        ("SupplementaryGroups", "adm"),
        ("StateDirectory", "irwatchd"),
        ("LogsDirectory", "irwatchd"),
        ("ConfigurationDirectory", "irwatchd"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("MemoryDenyWriteExecute", "yes"),
    ],
)
def test_unit_setting(unit: dict[str, list[str]], key: str, expected: str) -> None:
    assert unit[key][0] == expected


def test_unit_restart_prevented_for_permanent_errors(unit: dict[str, list[str]]) -> None:
    codes = unit["RestartPreventExitStatus"][0].split()

    assert {"64", "65", "78"} <= set(codes)


def test_unit_watchdog_set(unit: dict[str, list[str]]) -> None:
    assert unit["WatchdogSec"][0].endswith("s")
    assert "@system-service" in unit["SystemCallFilter"]


def test_dropin_adds_only_net_admin() -> None:
    dropin = _settings(DROPIN)

    assert dropin["CapabilityBoundingSet"] == ["CAP_NET_ADMIN"]
    assert dropin["AmbientCapabilities"] == ["CAP_NET_ADMIN"]
    assert dropin["RestrictAddressFamilies"] == ["AF_NETLINK"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.skipif(os.geteuid() != 0, reason="the check script may create /usr/bin/irwatchd")
def test_systemd_checks_script() -> None:
    result = subprocess.run(
        [str(ROOT / ".ci" / "systemd-checks.sh")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   unit: systemd-analyze verify" in result.stdout
    assert "ok   unit + nftables drop-in: systemd-analyze verify" in result.stdout
