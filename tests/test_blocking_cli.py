"""`irwatchd blocks add|remove`: argument checks, exit codes, and an unavailable back-end."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import audit_actions, run_cli, write_daemon_config


def _cli(tmp_path: Path, **settings: object) -> list[str]:
    config = write_daemon_config(tmp_path, **settings)
    return ["-c", str(config), "--state-dir", str(tmp_path / "state")]


@pytest.mark.parametrize("seconds", ["0", "-5", "0.5", "nan", "inf", "-inf", "1e20", "x"])
def test_add_rejects_invalid_seconds(tmp_path: Path, seconds: str) -> None:
    result = run_cli("blocks", "add", "192.0.2.8", f"--seconds={seconds}", *_cli(tmp_path))
    assert result.returncode == 64, result.stderr
    assert "--seconds" in result.stderr
    assert not (tmp_path / "state" / "blocks.json").exists()


def test_add_accepts_ten_years(tmp_path: Path) -> None:
    cli = _cli(tmp_path)
    added = run_cli("blocks", "add", "192.0.2.8", "--seconds", "315360000", *cli)
    assert added.returncode == 0, added.stderr
    listed = run_cli("blocks", "list", *cli)
    assert listed.returncode == 0, listed.stderr
    assert "192.0.2.8" in listed.stdout


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("not-an-ip", "does not appear to be an IPv4 or IPv6 address"),
    ],
)
def test_add_rejects_non_host_address(tmp_path: Path, address: str, reason: str) -> None:
    result = run_cli("blocks", "add", address, *_cli(tmp_path))
    assert result.returncode == 64, result.stderr
    assert reason in result.stderr
    assert not (tmp_path / "state" / "blocks.json").exists()


def test_remove_of_unblocked_address(tmp_path: Path) -> None:
    result = run_cli("blocks", "remove", "192.0.2.9", *_cli(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "not blocked: 192.0.2.9 (nothing changed)"


def test_remove_rejects_invalid_address(tmp_path: Path) -> None:
    result = run_cli("blocks", "remove", "192.0.2.999", *_cli(tmp_path))
    assert result.returncode == 64
    assert "'192.0.2.999' is not an IP address" in result.stderr


def test_add_with_missing_backend_exits_69(tmp_path: Path) -> None:
    blocking = {"backend": "nftables", "nft_path": "/usr/sbin/nft-nope"}
    cli = _cli(tmp_path, blocking=blocking)
    result = run_cli("blocks", "add", "192.0.2.10", *cli)
    assert result.returncode == 69, result.stderr
    assert "blocking.nft_path: /usr/sbin/nft-nope does not exist" in result.stderr
    assert not (tmp_path / "state" / "blocks.json").exists()


def test_add_with_failing_command_exits_69(tmp_path: Path) -> None:
    blocking = {"backend": "command", "command": ["/bin/false", "{address}"]}
    state = tmp_path / "state"
    result = run_cli("blocks", "add", "192.0.2.11", *_cli(tmp_path, blocking=blocking))
    assert result.returncode == 69, result.stderr
    assert "/bin/false exited with status 1" in result.stderr
    assert not (state / "blocks.json").exists(), "a failed block is not recorded"
    (record,) = audit_actions(state, "block")
    assert record["event"]["outcome"] == "failure"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("duration_seconds", 0),
        ("duration_seconds", 1e20),
        ("max_duration_seconds", 1e20),
        ("offence_memory_seconds", 1e20),
        ("increment_factor", 1e6),
    ],
)
def test_config_rejects_huge_durations(tmp_path: Path, key: str, value: float) -> None:
    config = write_daemon_config(tmp_path, blocking={key: value})
    result = run_cli("check", "-c", str(config))
    assert result.returncode == 78
    assert f"blocking.{key}" in result.stderr
