"""Block back-ends: what turns a block record into a firewall change.

`simulate` changes nothing. `nftables` keeps its own `inet` table with one IPv4 and one IPv6
set (`flags timeout`, so the kernel expires members by itself) and an input chain that drops
source addresses in either set. `command` runs an argument-list template per block.

Every back-end receives an address that `ipaddress` already parsed and printed again, and
runs its program from an absolute path with an argument list, a timeout and a minimal
environment. No shell is involved at any point.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import subprocess
from collections.abc import Sequence
from typing import Any, Protocol

import structlog

from irwatchd.config import Blocking
from irwatchd.errors import IrwatchdError

log = structlog.get_logger(__name__)

MINIMAL_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
SET_V4 = "blocked4"
SET_V6 = "blocked6"


class BackendError(IrwatchdError):
    """A firewall change that failed: the program is missing, timed out or exited non-zero."""


class BlockBackend(Protocol):
    """Something that enforces blocks: a firewall, a command, or nothing at all."""

    name: str

    def add(self, address: str, seconds: float) -> None:
        """Block an address for `seconds`, replacing a shorter block of the same address."""

    def remove(self, address: str) -> None:
        """Lift a block; lifting one that is absent is not an error."""


def canonical_address(text: str) -> str:
    """Parse an address with `ipaddress` and return its canonical text, or raise ValueError."""
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def _run(argv: Sequence[str], timeout: float, stdin: bytes | None = None) -> None:
    try:
        completed = subprocess.run(  # argument list, absolute path, no shell
            list(argv),
            input=stdin,
            capture_output=True,
            timeout=timeout,
            env=MINIMAL_ENV,
            check=False,
        )
    except FileNotFoundError:
        raise BackendError(
            f"{argv[0]} not found; install it or correct blocking.nft_path or blocking.command"
        ) from None
    except subprocess.TimeoutExpired:
        raise BackendError(f"{argv[0]} timed out after {timeout} s") from None
    except OSError as error:
        raise BackendError(f"{argv[0]} could not be started: {error}") from None
    if completed.returncode != 0:
        message = completed.stderr.decode(errors="replace").strip()[:500]
        raise BackendError(f"{argv[0]} exited with status {completed.returncode}: {message}")


class SimulatedBackend:
    """A back-end that only records: nothing reaches a firewall."""

    name = "simulate"

    def add(self, address: str, seconds: float) -> None:
        """Do nothing: the block store already holds the record."""

    def remove(self, address: str) -> None:
        """Do nothing: the block store already dropped the record."""


class NftablesBackend:
    """Blocks as timed members of two nftables sets, changed through `nft -j -f -`."""

    name = "nftables"

    def __init__(self, nft_path: str, table: str, priority: int, timeout: float) -> None:
        self.nft_path = nft_path
        self.table = table
        self.priority = priority
        self.timeout = timeout
        self._ready = False

    def _apply(self, commands: list[dict[str, Any]]) -> None:
        document = json.dumps({"nftables": commands}).encode()
        _run([self.nft_path, "-j", "-f", "-"], self.timeout, document)

    def _set_for(self, address: str) -> str:
        return SET_V4 if ipaddress.ip_address(address).version == 4 else SET_V6

    def ensure_table(self) -> None:
        """Create the table, sets and chain if missing, and reset the chain's two rules.

        The sets are left as they are, so members added before a restart keep their timeouts.
        """
        family = "inet"
        base = {"family": family, "table": self.table}
        rules = [
            {
                "add": {
                    "rule": base
                    | {
                        "chain": "input",
                        "expr": [
                            {
                                "match": {
                                    "op": "==",
                                    "left": {"payload": {"protocol": proto, "field": "saddr"}},
                                    "right": f"@{name}",
                                }
                            },
                            {"drop": None},
                        ],
                    }
                }
            }
            for proto, name in (("ip", SET_V4), ("ip6", SET_V6))
        ]
        self._apply(
            [
                {"add": {"table": {"family": family, "name": self.table}}},
                {
                    "add": {
                        "set": base | {"name": SET_V4, "type": "ipv4_addr", "flags": ["timeout"]}
                    }
                },
                {
                    "add": {
                        "set": base | {"name": SET_V6, "type": "ipv6_addr", "flags": ["timeout"]}
                    }
                },
                {
                    "add": {
                        "chain": base
                        | {
                            "name": "input",
                            "type": "filter",
                            "hook": "input",
                            "prio": self.priority,
                            "policy": "accept",
                        }
                    }
                },
                {"flush": {"chain": base | {"name": "input"}}},
                *rules,
            ]
        )
        self._ready = True
        log.info("nftables_table_ready", table=self.table, nft=self.nft_path)

    def add(self, address: str, seconds: float) -> None:
        """Put the address in its set with a timeout, replacing any earlier timeout."""
        if not self._ready:
            self.ensure_table()
        element = {"family": "inet", "table": self.table, "name": self._set_for(address)}
        timeout = max(1, math.ceil(seconds))
        # `add element` keeps an existing member's timeout, so the batch first makes sure the
        # member exists, deletes it, then adds it with the new timeout, in one transaction.
        self._apply(
            [
                {"add": {"element": element | {"elem": [address]}}},
                {"delete": {"element": element | {"elem": [address]}}},
                {
                    "add": {
                        "element": element
                        | {"elem": [{"elem": {"val": address, "timeout": timeout}}]}
                    }
                },
            ]
        )

    def remove(self, address: str) -> None:
        """Take the address out of its set; an absent address is added first, so never an error."""
        if not self._ready:
            self.ensure_table()
        element = {"family": "inet", "table": self.table, "name": self._set_for(address)}
        self._apply(
            [
                {"add": {"element": element | {"elem": [address]}}},
                {"delete": {"element": element | {"elem": [address]}}},
            ]
        )


class CommandBackend:
    """Runs an argument-list template per block, such as `[/usr/local/bin/ban, {address}]`.

    The placeholders `{address}` and `{seconds}` are replaced by plain text substitution, and
    each template item stays one argument, so an address can never become a second argument
    or an option. The address was validated by `ipaddress` before it gets here.
    """

    name = "command"

    def __init__(self, block: Sequence[str], unblock: Sequence[str], timeout: float) -> None:
        self.block_template = list(block)
        self.unblock_template = list(unblock)
        self.timeout = timeout

    @staticmethod
    def render(template: Sequence[str], address: str, seconds: float) -> list[str]:
        """Return the argument list for one address, after checking that it is an IP address."""
        try:
            canonical = canonical_address(address)
        except ValueError:
            canonical = None
        if canonical != address:
            raise BackendError(
                f"{address!r} is not a canonical IP address; the command was not run"
            )
        values = {"{address}": address, "{seconds}": str(max(1, math.ceil(seconds)))}
        argv = []
        for item in template:
            for placeholder, value in values.items():
                item = item.replace(placeholder, value)
            argv.append(item)
        return argv

    def add(self, address: str, seconds: float) -> None:
        """Run the block command for one address."""
        _run(self.render(self.block_template, address, seconds), self.timeout)

    def remove(self, address: str) -> None:
        """Run the unblock command, if one is configured."""
        if self.unblock_template:
            _run(self.render(self.unblock_template, address, 0), self.timeout)


def _program_problem(program: str) -> str | None:
    if not os.path.isabs(program):
        return f"{program!r} must be an absolute path"
    if not os.path.isfile(program):
        return f"{program} does not exist; install it or correct the path"
    if not os.access(program, os.X_OK):
        return f"{program} is not executable; run chmod +x on it or correct the path"
    return None


def backend_problems(settings: Blocking) -> list[tuple[str, str]]:
    """Return what keeps the configured back-end from running, as (key, message) pairs.

    The key is the setting to fix, such as `blocking.nft_path`. Only the programs are
    checked: whether `nft` may change the firewall (root or `CAP_NET_ADMIN`) shows when the
    daemon first runs it.
    """
    programs: list[tuple[str, str]] = []
    if settings.backend == "nftables":
        programs.append(("nft_path", settings.nft_path))
    elif settings.backend == "command":
        programs.append(("command", settings.command[0]))
        if settings.unblock_command:
            programs.append(("unblock_command", settings.unblock_command[0]))
    problems = []
    for key, program in programs:
        problem = _program_problem(program)
        if problem is not None:
            problems.append((f"blocking.{key}", problem))
    return problems


def build_backend(settings: Blocking) -> BlockBackend:
    """Return the back-end the `blocking:` settings name."""
    if settings.backend == "nftables":
        return NftablesBackend(
            settings.nft_path, settings.nft_table, settings.nft_priority, settings.timeout_seconds
        )
    if settings.backend == "command":
        return CommandBackend(settings.command, settings.unblock_command, settings.timeout_seconds)
    return SimulatedBackend()
