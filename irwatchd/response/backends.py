"""Block back-ends: what turns a block record into a firewall change.

`simulate` changes nothing. `nftables` keeps its own `inet` table with one IPv4 and one IPv6
set (`flags timeout`, so the kernel expires members by itself) and an input chain that drops
source addresses in either set. `command` runs an argument-list template per block.

Each back-end also takes many blocks at once (`add_many`, `remove_many`), as the daemon's
responder hands over the blocks of one batch of lines. nftables applies them in one `nft`
transaction per `MAX_BATCH_ELEMENTS` addresses; the others run once per address.

Every back-end receives an address that `ipaddress` already parsed and printed again, and
runs its program from an absolute path with an argument list, a timeout and a minimal
environment. No shell is involved at any point.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from irwatchd.config import Blocking
from irwatchd.errors import IrwatchdError
from irwatchd.logger import get_logger

log = get_logger(__name__)

MINIMAL_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
SET_V4 = "blocked4"
SET_V6 = "blocked6"
TABLE_CHECK_SECONDS = 10.0
"""Seconds between two checks that the nftables table still exists."""
MAX_BATCH_ELEMENTS = 2000
"""Maximum number of addresses in one `nft` transaction; larger batches run as several."""


class BackendError(IrwatchdError):
    """A firewall change that failed: the program is missing, timed out or exited non-zero."""


class BackendUnavailableError(BackendError):
    """A firewall program that did not run to its end: missing, not startable or timed out.

    Its input may or may not have been applied, so a batch that fails this way is not split
    and tried again in parts.
    """


class BlockBackend(Protocol):
    """Something that enforces blocks: a firewall, a command, or nothing at all."""

    name: str
    recreated: int
    """How often the back-end found its firewall state gone and created it again, empty."""

    def check(self) -> None:
        """Find out whether the firewall state is still in place, and create it again if not."""

    def add(self, address: str, seconds: float) -> None:
        """Block an address for `seconds`, replacing a shorter block of the same address."""

    def remove(self, address: str) -> None:
        """Lift a block; lifting one that is absent is not an error."""

    def add_many(self, blocks: Sequence[tuple[str, float]]) -> dict[str, str]:
        """Block each (address, seconds) pair; return the error message of each that failed."""

    def remove_many(self, addresses: Sequence[str]) -> dict[str, str]:
        """Lift each block; return the error message of each address that failed."""


def canonical_address(text: str) -> str:
    """Parse an address with `ipaddress` and return its canonical text, or raise ValueError."""
    return canonical_text(parse_canonical(text))


def parse_canonical(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse an address, unwrapping IPv4-mapped IPv6, or raise ValueError.

    A plain IPv6 address goes through the C `inet_pton` first: 1 µs where `ipaddress` parses the
    text in 9 µs, which a burst of 10,000 new blocks felt. Anything `inet_pton` rejects, and
    every text with a dot, gets the `ipaddress` parse and its error message.
    """
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    try:
        if "." in text:
            raise ValueError(text)
        address = ipaddress.IPv6Address(socket.inet_pton(socket.AF_INET6, text))
    except (OSError, ValueError):  # ValueError also for a NUL in the text
        address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def canonical_text(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """Return `str(address)`, for IPv6 from the C `inet_ntop` where its text is the same.

    glibc writes IPv4-compatible and IPv4-mapped IPv6 with a dotted quad, where `ipaddress`
    writes hex groups, so those keep `str`, as do addresses with a zone id.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is None:
        text = socket.inet_ntop(socket.AF_INET6, address.packed)
        if "." not in text:
            return text
    return str(address)


def _run(argv: Sequence[str], timeout: float, stdin: bytes | None = None) -> None:
    try:
        completed = subprocess.run(  # argument list, absolute path, no shell
            list(argv),
            input=stdin,
            # Without input the child reads /dev/null. A daemon that python-daemon detached
            # has its own /dev/null at fd 0 marked close-on-exec, so the child would start
            # without a standard input, and the first file it opens would take its place.
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            timeout=timeout,
            env=MINIMAL_ENV,
            check=False,
        )
    except FileNotFoundError:
        raise BackendUnavailableError(
            f"{argv[0]} not found; install it or correct blocking.nft_path or blocking.command"
        ) from None
    except subprocess.TimeoutExpired:
        raise BackendUnavailableError(f"{argv[0]} timed out after {timeout} s") from None
    except OSError as error:
        raise BackendUnavailableError(f"{argv[0]} could not be started: {error}") from None
    if completed.returncode != 0:
        message = completed.stderr.decode(errors="replace").strip()[:500]
        raise BackendError(f"{argv[0]} exited with status {completed.returncode}: {message}")


def _names_missing_object(error: BackendError) -> bool:
    """Return whether nft failed because the table, chain or set it names does not exist."""
    # nft reports a missing table, chain or set with the text of ENOENT (seen with nftables v1.0.6).
    return "No such file or directory" in str(error)


def _one_by_one(addresses: Sequence[str], action: Callable[[int], None]) -> dict[str, str]:
    """Run `action` on each index of `addresses`; return the error message of each failure."""
    failures = {}
    for index, address in enumerate(addresses):
        try:
            action(index)
        except BackendError as error:
            failures[address] = str(error)
    return failures


class SimulatedBackend:
    """A back-end that only records: nothing reaches a firewall."""

    name = "simulate"
    recreated = 0

    def check(self) -> None:
        """Do nothing: there is no firewall state to lose."""

    def add(self, address: str, seconds: float) -> None:
        """Do nothing: the block store already holds the record."""

    def remove(self, address: str) -> None:
        """Do nothing: the block store already dropped the record."""

    def add_many(self, blocks: Sequence[tuple[str, float]]) -> dict[str, str]:
        """Do nothing: the block store already holds the records."""
        return {}

    def remove_many(self, addresses: Sequence[str]) -> dict[str, str]:
        """Do nothing: the block store already dropped the records."""
        return {}


class NftablesBackend:
    """Blocks as timed members of two nftables sets, changed through `nft -j -f -`."""

    name = "nftables"

    def __init__(self, nft_path: str, table: str, priority: int, timeout: float) -> None:
        self.nft_path = nft_path
        self.table = table
        self.priority = priority
        self.timeout = timeout
        self.recreated = 0
        self._ready = False
        self._checked_at = float("-inf")

    def check(self) -> None:
        """Create the table again when someone removed it, at most once per check interval.

        `nft flush ruleset`, which `systemctl restart nftables` runs with Debian's default
        `/etc/nftables.conf`, removes the table with its sets. Listing the chain costs one
        short `nft` run and no set elements.
        """
        now = time.monotonic()
        if not self._ready or now - self._checked_at < TABLE_CHECK_SECONDS:
            return
        self._checked_at = now
        try:
            _run([self.nft_path, "list", "chain", "inet", self.table, "input"], self.timeout)
        except BackendUnavailableError:
            return  # the next block reports it; the table may well be there
        except BackendError as error:
            if not _names_missing_object(error):
                return
            try:
                self._recreate(error)
            except BackendError as create_error:
                # The next block tries again and reports the failure in status.json.
                log.error("nftables_table_create_failed", table=self.table,
                          error=str(create_error))  # fmt: skip

    def _recreate(self, error: BackendError) -> None:
        """Create the table and sets again after `error` showed them gone; raise on failure."""
        log.warning("nftables_table_missing", table=self.table, error=str(error),
                    action="creating the table again and adding every active block")  # fmt: skip
        self._ready = False
        self.ensure_table()
        self.recreated += 1

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
        self._raise_first(self.add_many([(address, seconds)]))

    def remove(self, address: str) -> None:
        """Take the address out of its set; an absent address is added first, so never an error."""
        self._raise_first(self.remove_many([address]))

    @staticmethod
    def _raise_first(failures: dict[str, str]) -> None:
        for message in failures.values():
            raise BackendError(message)

    def add_many(self, blocks: Sequence[tuple[str, float]]) -> dict[str, str]:
        """Put each address in its set with its timeout, in one transaction per batch."""
        timeouts = {address: max(1, math.ceil(seconds)) for address, seconds in blocks}
        return self._apply_all(list(timeouts), lambda batch: self._add_commands(batch, timeouts))

    def remove_many(self, addresses: Sequence[str]) -> dict[str, str]:
        """Take each address out of its set, in one transaction per batch."""
        return self._apply_all(list(dict.fromkeys(addresses)), self._remove_commands)

    def _apply_all(
        self, addresses: list[str], build: Callable[[list[str]], list[dict[str, Any]]]
    ) -> dict[str, str]:
        """Validate the addresses, then apply `build`'s commands batch by batch."""
        failures: dict[str, str] = {}
        valid = []
        for address in addresses:
            try:
                canonical = canonical_address(address)
            except ValueError:
                canonical = None
            if canonical != address:
                failures[address] = f"{address!r} is not a canonical IP address; nft was not run"
            else:
                valid.append(address)
        if not valid:
            return failures
        if not self._ready:
            try:
                self.ensure_table()
            except BackendError as error:
                return failures | dict.fromkeys(valid, str(error))
        for start in range(0, len(valid), MAX_BATCH_ELEMENTS):
            self._apply_batch(valid[start : start + MAX_BATCH_ELEMENTS], build, failures)
        return failures

    def _apply_batch(
        self,
        addresses: list[str],
        build: Callable[[list[str]], list[dict[str, Any]]],
        failures: dict[str, str],
        *,
        retried: bool = False,
    ) -> None:
        """Apply one transaction; when nft rejects it, try each half again.

        `nft -f` applies a whole transaction or nothing, so after a rejection the halves can
        be tried again safely, and one bad element costs about 2 * log2(batch) runs. When the
        table or a set is gone, they are created again and the batch is tried once more.
        """
        try:
            self._apply(build(addresses))
        except BackendUnavailableError as error:
            failures.update(dict.fromkeys(addresses, str(error)))
        except BackendError as error:
            if _names_missing_object(error) and not retried:
                try:
                    self._recreate(error)
                except BackendError as create_error:
                    failures.update(dict.fromkeys(addresses, str(create_error)))
                    return
                self._apply_batch(addresses, build, failures, retried=True)
                return
            if len(addresses) == 1:
                failures[addresses[0]] = str(error)
                return
            log.warning("nft_batch_rejected", addresses=len(addresses), error=str(error),
                        action="trying each half of the batch again")  # fmt: skip
            middle = len(addresses) // 2
            self._apply_batch(addresses[:middle], build, failures, retried=retried)
            self._apply_batch(addresses[middle:], build, failures, retried=retried)

    def _by_set(self, addresses: list[str]) -> list[tuple[dict[str, Any], list[str]]]:
        """Group addresses by the set of their family, each with the set's element base."""
        groups: dict[str, list[str]] = {}
        for address in addresses:
            groups.setdefault(self._set_for(address), []).append(address)
        return [
            ({"family": "inet", "table": self.table, "name": name}, members)
            for name, members in groups.items()
        ]

    def _add_commands(self, addresses: list[str], timeouts: dict[str, int]) -> list[dict[str, Any]]:
        # `add element` keeps an existing member's timeout, so the batch first makes sure each
        # member exists, deletes it, then adds it with the new timeout, in one transaction.
        commands: list[dict[str, Any]] = []
        for element, members in self._by_set(addresses):
            timed = [
                {"elem": {"val": address, "timeout": timeouts[address]}} for address in members
            ]
            commands += [
                {"add": {"element": element | {"elem": members}}},
                {"delete": {"element": element | {"elem": members}}},
                {"add": {"element": element | {"elem": timed}}},
            ]
        return commands

    def _remove_commands(self, addresses: list[str]) -> list[dict[str, Any]]:
        # Adding first makes deleting an absent member succeed.
        commands: list[dict[str, Any]] = []
        for element, members in self._by_set(addresses):
            commands += [
                {"add": {"element": element | {"elem": members}}},
                {"delete": {"element": element | {"elem": members}}},
            ]
        return commands


class CommandBackend:
    """Runs an argument-list template per block, such as `[/usr/local/bin/ban, {address}]`.

    The placeholders `{address}` and `{seconds}` are replaced by plain text substitution, and
    each template item stays one argument, so an address can never become a second argument
    or an option. The address was validated by `ipaddress` before it gets here.
    """

    name = "command"
    recreated = 0

    def __init__(self, block: Sequence[str], unblock: Sequence[str], timeout: float) -> None:
        self.block_template = list(block)
        self.unblock_template = list(unblock)
        self.timeout = timeout

    def check(self) -> None:
        """Do nothing: the command keeps its own state, which irwatchd cannot inspect."""

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

    def add_many(self, blocks: Sequence[tuple[str, float]]) -> dict[str, str]:
        """Run the block command once per address."""
        addresses = [address for address, _ in blocks]
        return _one_by_one(addresses, lambda index: self.add(*blocks[index]))

    def remove_many(self, addresses: Sequence[str]) -> dict[str, str]:
        """Run the unblock command once per address."""
        return _one_by_one(addresses, lambda index: self.remove(addresses[index]))


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
