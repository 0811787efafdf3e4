"""The nftables back-end in network namespaces this test creates: real sets, real drops.

Two namespaces are joined by a veth pair. The daemon runs inside the `fw` namespace with the
nftables back-end. Pings come from three addresses in the `atk` namespace: one that gets
blocked, one that no log line names (its traffic must pass), and one on the allowlist.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, append_lines, audit_actions, wait_until

IP = shutil.which("ip") or "/usr/sbin/ip"
NFT = shutil.which("nft") or "/usr/sbin/nft"
PING = shutil.which("ping") or "/usr/bin/ping"

FIREWALL_ADDRESS = "10.231.0.1"
ATTACKER = "10.231.0.2"
BYSTANDER = "10.231.0.3"
ALLOWLISTED = "10.231.0.4"
FIREWALL_V6 = "fd00:231::1"
ATTACKER_V6 = "fd00:231::2"
BYSTANDER_V6 = "fd00:231::3"


def _namespace_support() -> str | None:
    """Return why namespaces with nftables cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in (IP, NFT, PING):
        if not Path(tool).exists():
            return f"{tool} not installed (apt-get install -y iproute2 nftables iputils-ping)"
    probe = f"irwprobe-{uuid.uuid4().hex[:8]}"
    created = subprocess.run(
        [IP, "netns", "add", probe], capture_output=True, timeout=10, check=False
    )
    if created.returncode != 0:
        return f"cannot create a network namespace: {created.stderr.decode().strip()}"
    try:
        listed = subprocess.run(
            [IP, "netns", "exec", probe, NFT, "list", "ruleset"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        if listed.returncode != 0:
            return f"nftables unavailable in the kernel: {listed.stderr.decode().strip()}"
    finally:
        subprocess.run([IP, "netns", "del", probe], capture_output=True, timeout=10, check=False)
    return None


_REASON = _namespace_support()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=20, check=check)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    """Create `fw` and `atk` namespaces joined by a veth pair; delete both afterwards."""
    suffix = uuid.uuid4().hex[:8]
    firewall, attacker = f"irw-fw-{suffix}", f"irw-atk-{suffix}"
    _run(IP, "netns", "add", firewall)
    try:
        _run(IP, "netns", "add", attacker)
        _run(
            IP,
            "-n",
            firewall,
            "link",
            "add",
            "vf0",
            "type",
            "veth",
            "peer",
            "name",
            "va0",
            "netns",
            attacker,
        )
        _run(IP, "-n", firewall, "addr", "add", f"{FIREWALL_ADDRESS}/24", "dev", "vf0")
        for address in (ATTACKER, BYSTANDER, ALLOWLISTED):
            _run(IP, "-n", attacker, "addr", "add", f"{address}/24", "dev", "va0")
        _run(IP, "-n", firewall, "addr", "add", f"{FIREWALL_V6}/64", "dev", "vf0", "nodad")
        for address in (ATTACKER_V6, BYSTANDER_V6):
            _run(IP, "-n", attacker, "addr", "add", f"{address}/64", "dev", "va0", "nodad")
        for namespace, device in ((firewall, "vf0"), (attacker, "va0")):
            _run(IP, "-n", namespace, "link", "set", "lo", "up")
            _run(IP, "-n", namespace, "link", "set", device, "up")
        yield firewall, attacker
    finally:
        _run(IP, "netns", "del", attacker, check=False)
        _run(IP, "netns", "del", firewall, check=False)


def _ping_passes(attacker: str, source: str) -> bool:
    target = FIREWALL_V6 if ":" in source else FIREWALL_ADDRESS
    result = _run(
        IP,
        "netns",
        "exec",
        attacker,
        PING,
        "-n",
        "-c1",
        "-W1",
        "-I",
        source,
        target,
        check=False,
    )
    return result.returncode == 0


def _set_members(firewall: str, name: str = "blocked4") -> dict[str, dict[str, Any]]:
    """Return a set's members with their timeouts, or {} when the table is missing."""
    result = _run(
        IP,
        "netns",
        "exec",
        firewall,
        NFT,
        "-j",
        "list",
        "set",
        "inet",
        "irwatchd",
        name,
        check=False,
    )
    if result.returncode != 0:
        return {}
    members: dict[str, dict[str, Any]] = {}
    for item in json.loads(result.stdout)["nftables"]:
        for element in item.get("set", {}).get("elem", []):
            if isinstance(element, dict):
                members[element["elem"]["val"]] = element["elem"]
            else:
                members[element] = {}
    return members


def _write_config(path: Path, duration: float) -> Path:
    path.write_text(
        f"""
rules:
  files: ["{ROOT}/etc/rules.d/*.yaml"]
policy:
  low: [audit, ticket, block]
  medium: [audit, ticket, block]
  high: [audit, ticket, block]
  critical: [audit, ticket, block]
blocking:
  backend: nftables
  duration_seconds: {duration}
  allowlist: ["127.0.0.0/8", "{ALLOWLISTED}/32"]
"""
    )
    return path


@contextmanager
def _daemon_in(
    namespace: str, config: Path, state: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `irwatchd run` inside a namespace and stop it with SIGTERM afterwards."""
    state.mkdir(parents=True, exist_ok=True)
    stderr_path = state.parent / "daemon.stderr.log"
    with stderr_path.open("ab") as stderr:
        process = subprocess.Popen(
            [
                IP,
                "netns",
                "exec",
                namespace,
                sys.executable,
                "-m",
                "irwatchd",
                "run",
                "-c",
                str(config),
                "--state-dir",
                str(state),
                "--watch",
                f"{log}:syslog",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        # Start-up compiles every rule; on a loaded two-core machine that can take a while.
        wait_until(
            lambda: "daemon_started" in stderr_path.read_text() or process.poll() is not None,
            timeout=60,
        )
        assert process.poll() is None, stderr_path.read_text()
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


def _failed_password(address: str) -> str:
    return f"Dec 10 06:55:48 host sshd[24200]: Failed password for root from {address} port 22 ssh2"


def test_nftables_blocks_drops_and_expires(namespaces: tuple[str, str], tmp_path: Path) -> None:
    firewall, attacker = namespaces
    config = _write_config(tmp_path / "irwatchd.yaml", duration=4)
    state, log = tmp_path / "state", tmp_path / "auth.log"
    log.write_text("")
    assert _ping_passes(attacker, ATTACKER), "the veth link works before any block"

    with _daemon_in(firewall, config, state, log):
        append_lines(log, [_failed_password(ALLOWLISTED), _failed_password(ATTACKER)])
        members = wait_until(
            lambda: _set_members(firewall).get(ATTACKER) and _set_members(firewall)
        )
        assert 0 < members[ATTACKER]["timeout"] <= 4
        assert ALLOWLISTED not in members

        assert not _ping_passes(attacker, ATTACKER), "traffic from the blocked address is dropped"
        assert _ping_passes(attacker, BYSTANDER), "traffic from other addresses passes"
        assert _ping_passes(attacker, ALLOWLISTED)

        wait_until(lambda: ATTACKER not in _set_members(firewall), timeout=15)
        assert _ping_passes(attacker, ATTACKER), "the block expired"

    blocks = audit_actions(state, "block")
    outcomes = {record["source"]["ip"]: record["irwatchd"]["block_result"] for record in blocks}
    assert outcomes == {ATTACKER: "blocked", ALLOWLISTED: "allowlisted"}
    assert ALLOWLISTED not in _set_members(firewall)


def test_nftables_restore_after_restart(namespaces: tuple[str, str], tmp_path: Path) -> None:
    firewall, attacker = namespaces
    config = _write_config(tmp_path / "irwatchd.yaml", duration=600)
    state, log = tmp_path / "state", tmp_path / "auth.log"
    log.write_text("")
    with _daemon_in(firewall, config, state, log):
        append_lines(log, [_failed_password(ATTACKER)])
        wait_until(lambda: ATTACKER in _set_members(firewall))

    # A reboot empties the kernel's sets; the next start must put the block back.
    _run(IP, "netns", "exec", firewall, NFT, "flush", "set", "inet", "irwatchd", "blocked4")
    assert ATTACKER not in _set_members(firewall)
    with _daemon_in(firewall, config, state, log):
        member = wait_until(lambda: _set_members(firewall).get(ATTACKER))
        assert 0 < member["timeout"] <= 600
        assert not _ping_passes(attacker, ATTACKER)
    restores = audit_actions(state, "block_restore")
    assert restores[-1]["irwatchd"]["addresses"] == [ATTACKER]


def test_table_recreated_after_ruleset_flush(namespaces: tuple[str, str], tmp_path: Path) -> None:
    firewall, attacker = namespaces
    config = _write_config(tmp_path / "irwatchd.yaml", duration=600)
    state, log = tmp_path / "state", tmp_path / "auth.log"
    log.write_text("")
    second = "192.0.2.77"
    with _daemon_in(firewall, config, state, log):
        append_lines(log, [_failed_password(ATTACKER)])
        wait_until(lambda: ATTACKER in _set_members(firewall))

        # `systemctl restart nftables` with Debian's default config flushes the whole ruleset.
        _run(IP, "netns", "exec", firewall, NFT, "flush", "ruleset")
        assert _set_members(firewall) == {}
        append_lines(log, [_failed_password(second)])
        after_block = wait_until(
            lambda: {ATTACKER, second} <= set(_set_members(firewall)) and _set_members(firewall)
        )
        blocked_again = not _ping_passes(attacker, ATTACKER)

        # With no new block to notice it, the periodic check restores the table.
        _run(IP, "netns", "exec", firewall, NFT, "flush", "ruleset")
        after_check = wait_until(
            lambda: {ATTACKER, second} <= set(_set_members(firewall)) and _set_members(firewall),
            timeout=30,
        )

    assert 0 < after_block[ATTACKER]["timeout"] <= 600
    assert blocked_again, "the recreated chain drops the earlier attacker again"
    assert 0 < after_check[second]["timeout"] <= 600
    outcomes = [record["irwatchd"]["block_result"] for record in audit_actions(state, "block")]
    assert outcomes == ["blocked", "blocked"]
    stderr = (tmp_path / "daemon.stderr.log").read_text()
    assert stderr.count("nftables_table_missing") == 2


def test_blocks_cli_applies_without_daemon(namespaces: tuple[str, str], tmp_path: Path) -> None:
    firewall, attacker = namespaces
    config = _write_config(tmp_path / "irwatchd.yaml", duration=600)
    state = tmp_path / "state"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return _run(
            IP,
            "netns",
            "exec",
            firewall,
            sys.executable,
            "-m",
            "irwatchd",
            "blocks",
            *args,
            "-c",
            str(config),
            "--state-dir",
            str(state),
            check=False,
        )

    added = cli("add", BYSTANDER, "--seconds", "120")
    assert added.returncode == 0, added.stderr
    assert _set_members(firewall)[BYSTANDER]["timeout"] <= 120
    assert not _ping_passes(attacker, BYSTANDER)

    removed = cli("remove", BYSTANDER)
    assert removed.returncode == 0, removed.stderr
    assert BYSTANDER not in _set_members(firewall)
    assert _ping_passes(attacker, BYSTANDER)

    again = cli("remove", BYSTANDER)
    assert again.returncode == 0, "lifting an absent block is not an error"
    assert f"not blocked: {BYSTANDER} (nothing changed)" in again.stdout

    refused = cli("add", ALLOWLISTED)
    assert refused.returncode == 65
    assert ALLOWLISTED not in _set_members(firewall)
    actions = [(r["event"]["action"], r["event"]["outcome"]) for r in audit_actions(state, "block")]
    assert actions == [("block", "success"), ("block", "unknown")]
    results = [r["irwatchd"]["block_result"] for r in audit_actions(state, "block")]
    assert results == ["blocked", "allowlisted"]
    assert len(audit_actions(state, "unblock")) == 2


def test_ipv6_and_mapped_addresses(namespaces: tuple[str, str], tmp_path: Path) -> None:
    firewall, attacker = namespaces
    config = _write_config(tmp_path / "irwatchd.yaml", duration=600)
    state = tmp_path / "state"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return _run(
            IP, "netns", "exec", firewall, sys.executable, "-m", "irwatchd", "blocks", *args,
            "-c", str(config), "--state-dir", str(state), check=False,
        )  # fmt: skip

    wait_until(lambda: _ping_passes(attacker, ATTACKER_V6), timeout=10)
    added = cli("add", ATTACKER_V6)
    assert added.returncode == 0, added.stderr
    assert ATTACKER_V6 in _set_members(firewall, "blocked6")
    assert not _ping_passes(attacker, ATTACKER_V6), (
        "IPv6 traffic from the blocked address is dropped"
    )
    assert _ping_passes(attacker, BYSTANDER_V6)

    mapped = cli("add", f"::ffff:{ATTACKER}")
    assert mapped.returncode == 0, mapped.stderr
    assert ATTACKER in _set_members(firewall, "blocked4"), "IPv4-mapped IPv6 lands in the IPv4 set"
    assert not _ping_passes(attacker, ATTACKER)


BATCH_SCRIPT = """
import json, sys
import irwatchd.response.backends as backends
from irwatchd.response.backends import NftablesBackend

runs = []
run = backends._run
backends._run = lambda argv, timeout, stdin=None: runs.append(argv) or run(argv, timeout, stdin)
backend = NftablesBackend(sys.argv[1], "irwatchd", 0, 60)
addresses = json.loads(sys.argv[2])
added = backend.add_many([(address, 600) for address in addresses])
added_runs = len(runs)
removed = backend.remove_many(addresses[::2])
print(json.dumps({"added": added, "added_runs": added_runs, "removed": removed,
                  "removed_runs": len(runs) - added_runs}))
"""


def test_batched_apply_fills_both_sets(namespaces: tuple[str, str], tmp_path: Path) -> None:
    firewall, _ = namespaces
    v4 = [f"10.232.{index // 200}.{index % 200 + 1}" for index in range(200)]
    v6 = [f"fd00:232::{index + 1:x}" for index in range(200)]
    addresses = [address for pair in zip(v4, v6, strict=True) for address in pair]

    result = _run(
        IP, "netns", "exec", firewall, sys.executable, "-c", BATCH_SCRIPT, NFT,
        json.dumps(addresses),
    )  # fmt: skip
    outcome = json.loads(result.stdout.splitlines()[-1])  # structlog prints its events above

    assert outcome["added"] == {}
    assert outcome["added_runs"] == 2, "one run creates the table, one adds all 400 addresses"
    assert outcome["removed"] == {}
    assert outcome["removed_runs"] == 1
    members4, members6 = _set_members(firewall, "blocked4"), _set_members(firewall, "blocked6")
    not_removed = set(addresses[1::2])
    assert set(members4) == not_removed & set(v4)
    assert set(members6) == not_removed & set(v6)
    assert all(0 < member["timeout"] <= 600 for member in members4.values())
    assert all(0 < member["timeout"] <= 600 for member in members6.values())
