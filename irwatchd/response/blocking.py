"""Blocks: which addresses are blocked until when, persisted in `blocks.json`.

`blocks.json` maps each blocked address to its block; `blocks.history.json` keeps how often
each address was blocked, which outlives the blocks themselves.

The store is the source of truth and a back-end applies its changes to a firewall. The
daemon and `irwatchd blocks` change the files only under an `flock` on `blocks.json.lock`.
The daemon checks the files before every change and on every tick, and reads them again when
their inode, size or modification time changed. A block that the CLI adds or removes while
the daemon runs therefore reaches the back-end within one poll. The daemon's responder adds
the blocks of one batch of lines with one `block_many`: one back-end call and one save.

Repeat offenders get longer blocks, as fail2ban's `bantime.increment` does: the n-th block of
an address within `offence_memory_seconds` lasts `duration * increment_factor ** (n - 1)`,
capped at `max_duration_seconds`. At most `max_blocks_per_minute` new blocks are added in any
60 seconds, so a flood of distinct (possibly forged) addresses cannot fill the firewall.

A damaged `blocks.json` or `blocks.history.json` (invalid JSON, or values of the wrong type)
stops a CLI command with exit 65. The daemon instead moves the file aside to
`<name>.damaged-<UTC time>`, logs `state_file_damaged` and continues with empty state for it.
"""

from __future__ import annotations

import fcntl
import ipaddress
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irwatchd.config import MAX_BLOCK_SECONDS, Blocking
from irwatchd.jsonfiles import (
    DamagedStateError,
    MemberLines,
    move_aside,
    open_lock_file,
    read_json_object,
    write_json_lines_object,
)
from irwatchd.logger import get_logger
from irwatchd.response.allowlist import Allowlist
from irwatchd.response.backends import (
    BackendError,
    BlockBackend,
    canonical_address,
    canonical_text,
    parse_canonical,
)

log = get_logger(__name__)

RATE_WINDOW_SECONDS = 60.0

FileSignature = tuple[int, int, int] | None
"""A file's (inode, size, mtime in ns), or None when it is missing."""


def _signature(path: Path) -> FileSignature:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


def blockable_address(text: str) -> str:
    """Return the canonical text of an address that may be blocked, or raise ValueError.

    Unspecified, multicast and broadcast addresses are rejected: no single attacker sends
    from them, and blocking them drops traffic of many hosts or none.
    """
    return canonical_text(parse_blockable(text))


def parse_blockable(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse an address that may be blocked, as `blockable_address` checks it."""
    address = parse_canonical(text.split("%", 1)[0])
    if address.is_unspecified:
        raise ValueError(f"{address} is the unspecified address, not a host")
    if address.is_multicast:
        raise ValueError(f"{address} is a multicast address, not a host")
    if address == _BROADCAST:
        raise ValueError(f"{address} is the broadcast address, not a host")
    return address


_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def check_block_seconds(seconds: float) -> float:
    """Return `seconds` when it is a finite block duration from 1 s to 10 years, else raise."""
    if not math.isfinite(seconds) or not 1 <= seconds <= MAX_BLOCK_SECONDS:
        raise ValueError(
            f"block duration {seconds!r} is invalid; give a number of seconds from 1 to "
            f"{MAX_BLOCK_SECONDS} (10 years)"
        )
    return seconds


def _is_time(value: object) -> bool:
    """Return whether `value` is a finite number of seconds since the epoch, as JSON stores it."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and abs(value) <= 2 * MAX_BLOCK_SECONDS + time.time()
    )


def _blocks_problem(document: dict[str, Any]) -> str | None:
    for address, entry in document.items():
        if not isinstance(entry, dict):
            return f"the block of {address!r} is {type(entry).__name__}, not an object"
        if not _is_time(entry.get("expires_at")):
            return f"the block of {address!r} has an invalid expires_at {entry.get('expires_at')!r}"
    return None


def _history_problem(document: dict[str, Any]) -> str | None:
    for address, entry in document.items():
        if not isinstance(entry, dict):
            return f"the history of {address!r} is {type(entry).__name__}, not an object"
        count = entry.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return f"the history of {address!r} has an invalid count {count!r}"
        if not _is_time(entry.get("last_at")):
            return f"the history of {address!r} has an invalid last_at {entry.get('last_at')!r}"
    return None


@dataclass(frozen=True, slots=True)
class BlockRequest:
    """One address to block, why, and for which incident; `seconds` overrides the duration."""

    address: str
    reason: str
    incident_id: str | None
    seconds: float | None = None


@dataclass(frozen=True, slots=True)
class BlockResult:
    """The result of one block request.

    `outcome` is one of `blocked`, `already_blocked`, `allowlisted`, `invalid`,
    `rate_limited` or `failed` (the back-end raised, and `error` is its message).
    """

    outcome: str
    address: str
    expires_at: float | None = None
    seconds: float | None = None
    offences: int = 0
    error: str | None = None


class BlockStore:
    """Active blocks with expiry and the offence history, shared through `blocks.json`."""

    def __init__(
        self,
        path: Path,
        backend: BlockBackend,
        allowlist: Allowlist,
        settings: Blocking | None = None,
        *,
        apply: bool = True,
        recover_damaged: bool = False,
    ) -> None:
        self.path = path
        self.backend = backend
        self.allowlist = allowlist
        self.settings = settings or Blocking()
        self.apply = apply
        self.recover_damaged = recover_damaged
        self.last_error: str | None = None
        """The message of the back-end's last failure, or None after a success."""
        self.history_path = path.with_name(path.stem + ".history.json")
        self._blocks: dict[str, dict[str, Any]] = {}
        self._offences: dict[str, dict[str, Any]] = {}
        # Entries are replaced, never changed in place, so these reuse the lines of
        # unchanged entries when `_save` writes the files again.
        self._block_lines = MemberLines()
        self._offence_lines = MemberLines()
        self._applied: set[str] = set()
        # Expired blocks lifted while saving the file failed, for the next `expire` to return.
        self._lifted_unsaved: list[str] = []
        # Whether the last save failed, so memory has changes that the files lack.
        self._unsaved = False
        self._seen_recreated = backend.recreated
        # NOTE: the rate window lives in memory, so a restart starts a fresh 60 seconds.
        self._recent: deque[float] = deque()
        # The signatures of blocks.json and its history as last read or written, so a load
        # skips the read and the checks when no other process changed them.
        # NOTE: two rewrites by another process within one clock tick that reuse the inode
        # and keep the size look unchanged. The next change to the file reloads it.
        self._loaded_signatures: tuple[FileSignature, FileSignature] | None = None
        self._load()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        descriptor = open_lock_file(self.path.with_name(self.path.name + ".lock"))
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)

    def _load(self) -> None:
        if self._unsaved:
            # The last save failed (a full disk), so memory is newer than the files. Reading
            # them now would make the unsaved blocks look removed by `irwatchd blocks`, so
            # write them first. A change that command made meanwhile is overwritten.
            self._save()
            return
        signatures = (_signature(self.path), _signature(self.history_path))
        if signatures == self._loaded_signatures and None not in signatures:
            return
        self._blocks = self._read_checked(self.path, _blocks_problem)
        self._offences = self._read_checked(self.history_path, _history_problem)
        self._loaded_signatures = (_signature(self.path), _signature(self.history_path))

    def _read_checked(
        self, path: Path, find_problem: Callable[[dict[str, Any]], str | None]
    ) -> dict[str, dict[str, Any]]:
        """Read one of the two files; raise on damage, or move it aside when recovering."""
        try:
            document = read_json_object(path, {})
            problem = find_problem(document)
            if problem is not None:
                raise DamagedStateError(path, problem)
        except DamagedStateError as error:
            if not self.recover_damaged:
                raise
            moved_to = move_aside(path)
            log.error(
                "state_file_damaged",
                path=str(path),
                moved_to=str(moved_to),
                error=error.problem,
                action="continuing with empty state for this file",
            )
            return {}
        return document

    def _backend_failed(self, error: BackendError) -> None:
        self.last_error = str(error)

    def _backend_succeeded(self) -> None:
        self.last_error = None

    def _save(self) -> None:
        self._unsaved = True
        horizon = time.time() - self.settings.offence_memory_seconds
        self._offences = {
            address: history
            for address, history in self._offences.items()
            if float(history["last_at"]) >= horizon
        }
        write_json_lines_object(self.path, self._blocks, members=self._block_lines)
        write_json_lines_object(self.history_path, self._offences, members=self._offence_lines)
        self._loaded_signatures = (_signature(self.path), _signature(self.history_path))
        self._unsaved = False

    def active(self, now: float | None = None) -> dict[str, dict[str, Any]]:
        """Return the blocks that have not expired."""
        moment = time.time() if now is None else now
        return {
            address: entry
            for address, entry in self._blocks.items()
            if float(entry["expires_at"]) > moment
        }

    def active_entry(self, address: str) -> dict[str, Any] | None:
        """Return the active block of a canonical address as last read or written, or None."""
        entry = self._blocks.get(address)
        if entry is None or float(entry["expires_at"]) <= time.time():
            return None
        return entry

    def duration_for(self, address: str, now: float) -> tuple[float, int]:
        """Return how long the next block of `address` lasts and which offence it is (from 1)."""
        history = self._offences.get(address)
        previous = 0
        if (
            history is not None
            and now - float(history["last_at"]) <= self.settings.offence_memory_seconds
        ):
            previous = int(history["count"])
        try:
            seconds = self.settings.duration_seconds * self.settings.increment_factor**previous
        except OverflowError:
            seconds = math.inf
        return min(seconds, self.settings.max_duration_seconds), previous + 1

    def _rate_limited(self, pending: int = 0) -> bool:
        """Return whether one more block, after `pending` not yet counted, exceeds the cap."""
        moment = time.monotonic()
        while self._recent and moment - self._recent[0] >= RATE_WINDOW_SECONDS:
            self._recent.popleft()
        return len(self._recent) + pending >= self.settings.max_blocks_per_minute

    def block(
        self,
        address: str,
        reason: str,
        incident_id: str | None,
        seconds: float | None = None,
        *,
        source: str = "daemon",
    ) -> BlockResult:
        """Block an address unless it is invalid, allowlisted, already blocked or over the rate cap.

        `seconds` overrides the computed duration (the CLI's `--seconds`); a value outside
        1 s to 10 years raises ValueError.
        """
        request = BlockRequest(address, reason, incident_id, seconds)
        return self.block_many([request], source=source)[0]

    def block_many(
        self, requests: Sequence[BlockRequest], *, source: str = "daemon"
    ) -> list[BlockResult]:
        """Block many addresses with one back-end call and one save; return a result for each.

        Each request is judged as `block` judges one, in order, so a second request for an
        address earlier in the list is `already_blocked`. A `seconds` outside 1 s to 10 years
        raises ValueError before anything changes.
        """
        for request in requests:
            if request.seconds is not None:
                check_block_seconds(request.seconds)
        results: list[BlockResult | None] = [None] * len(requests)
        candidates: list[tuple[int, str]] = []
        for index, request in enumerate(requests):
            early = self._judge_without_lock(request.address)
            if isinstance(early, BlockResult):
                results[index] = early
            else:
                candidates.append((index, early))
        if candidates:
            with self._locked():
                self._load()
                self._add_candidates(requests, candidates, results, source)
        return [result for result in results if result is not None]

    def _judge_without_lock(self, address: str) -> BlockResult | str:
        """Return the result of a request decided without the files, else the canonical address."""
        try:
            parsed = parse_blockable(address)
        except ValueError as error:
            return BlockResult("invalid", address, error=str(error))
        canonical = canonical_text(parsed)
        if self.allowlist.contains_parsed(parsed):
            return BlockResult("allowlisted", canonical)
        known = self._blocks.get(canonical)
        if known is not None and float(known["expires_at"]) > time.time():
            # Fast path for a flood from one blocked address: no file read per finding. The
            # memory copy is at most one tick older than the file (`sync` reloads it).
            return BlockResult("already_blocked", canonical, float(known["expires_at"]))
        return canonical

    def _add_candidates(
        self,
        requests: Sequence[BlockRequest],
        candidates: list[tuple[int, str]],
        results: list[BlockResult | None],
        source: str,
    ) -> None:
        """Decide, apply and save the candidates of `block_many`; the caller holds the lock."""
        now = time.time()
        accepted: dict[str, tuple[int, float, int]] = {}
        for index, canonical in candidates:
            current = self._blocks.get(canonical)
            if current is not None and float(current["expires_at"]) > now:
                results[index] = BlockResult(
                    "already_blocked", canonical, float(current["expires_at"])
                )
            elif canonical in accepted:
                first = accepted[canonical]
                results[index] = BlockResult("already_blocked", canonical, now + first[1])
            elif source == "daemon" and self._rate_limited(len(accepted)):
                results[index] = BlockResult("rate_limited", canonical)
            else:
                duration, offence = self.duration_for(canonical, now)
                seconds = requests[index].seconds
                accepted[canonical] = (index, duration if seconds is None else seconds, offence)
        if not accepted:
            return
        failures = self._apply_blocks(accepted, requests)
        for canonical, (index, duration, offence) in accepted.items():
            if canonical in failures:
                results[index] = BlockResult("failed", canonical, error=failures[canonical])
                continue
            request = requests[index]
            self._recent.append(time.monotonic())
            expires_at = now + duration
            self._blocks[canonical] = {
                "address": canonical,
                "blocked_at": now,
                "expires_at": expires_at,
                "seconds": duration,
                "offence": offence,
                "reason": request.reason,
                "incident_id": request.incident_id,
                "backend": self.backend.name,
                "source": source,
            }
            self._offences[canonical] = {"count": offence, "last_at": now}
            results[index] = BlockResult("blocked", canonical, expires_at, duration, offence)
        if len(failures) < len(accepted):
            self._save()

    def _apply_blocks(
        self, accepted: dict[str, tuple[int, float, int]], requests: Sequence[BlockRequest]
    ) -> dict[str, str]:
        """Hand the accepted blocks to the back-end; return the error message of each failure."""
        if not self.apply:
            return {}
        failures = self.backend.add_many(
            [(canonical, duration) for canonical, (_, duration, _) in accepted.items()]
        )
        for canonical, error in failures.items():
            log.error(
                "block_failed",
                address=canonical,
                backend=self.backend.name,
                incident_id=requests[accepted[canonical][0]].incident_id,
                error=error,
            )
        if failures:
            self.last_error = next(iter(failures.values()))
        else:
            self._backend_succeeded()
        self._applied.update(canonical for canonical in accepted if canonical not in failures)
        self._reapply_if_recreated(time.time())
        return failures

    def _reapply_if_recreated(self, now: float) -> None:
        """Add every active block again when the back-end had to create its state anew."""
        if self.backend.recreated == self._seen_recreated:
            return
        self._seen_recreated = self.backend.recreated
        active = sorted(self.active(now))
        applied = self._add_quietly(active, now, "block_reapply_failed")
        log.warning("blocks_reapplied", backend=self.backend.name, active=len(active),
                    applied=len(applied))  # fmt: skip

    def unblock(self, address: str) -> bool:
        """Lift a block and return whether one was recorded; an absent block is not an error.

        Raises `BackendError` when the back-end fails, and then keeps the block recorded.
        """
        try:
            canonical = canonical_address(address.split("%", 1)[0])
        except ValueError:
            return False
        with self._locked():
            self._load()
            entry = self._blocks.get(canonical)
            if self.apply:
                try:
                    self.backend.remove(canonical)
                except BackendError as error:
                    self._backend_failed(error)
                    raise
                self._backend_succeeded()
                self._applied.discard(canonical)
            self._blocks.pop(canonical, None)
            self._save()
        return entry is not None

    def expire(self, now: float | None = None) -> list[str]:
        """Drop expired blocks, lift them in the back-end, and return their addresses.

        When saving the file fails (a full disk), the error is raised and the lifted
        addresses are returned by the next call that saves, so each is returned once.
        """
        moment = time.time() if now is None else now
        with self._locked():
            self._load()
            expired = [
                address
                for address, entry in self._blocks.items()
                if float(entry["expires_at"]) <= moment
            ]
            for address in expired:
                self._blocks.pop(address)
            if self.apply:
                self._remove_quietly(expired)
            self._lifted_unsaved = list(dict.fromkeys(self._lifted_unsaved + expired))
            lifted = self._lifted_unsaved
            if lifted:
                self._save()
            self._lifted_unsaved = []
        return lifted

    def _remove_quietly(self, addresses: list[str]) -> None:
        """Lift blocks in the back-end, logging each failure instead of raising it."""
        if not addresses:
            return
        failures = self.backend.remove_many(addresses)
        for address, error in failures.items():
            self.last_error = error
            log.error("unblock_failed", address=address, backend=self.backend.name, error=error)
        self._applied.difference_update(addresses)

    def _add_quietly(self, addresses: list[str], now: float, event: str) -> list[str]:
        """Apply recorded blocks with their remaining time; log failures, return what applied."""
        if not addresses:
            return []
        failures = self.backend.add_many(
            [(address, float(self._blocks[address]["expires_at"]) - now) for address in addresses]
        )
        for address, error in failures.items():
            self.last_error = error
            log.error(event, address=address, backend=self.backend.name, error=error)
        if not failures:
            self._backend_succeeded()
        applied = [address for address in addresses if address not in failures]
        self._applied.update(applied)
        return applied

    def restore(self) -> list[str]:
        """Add every active block to the back-end again with its remaining time (at start)."""
        now = time.time()
        with self._locked():
            self._load()
            return self._add_quietly(sorted(self.active(now)), now, "block_restore_failed")

    def sync(self) -> tuple[list[str], list[str]]:
        """Apply blocks that another process added to or removed from the file.

        Returns the addresses added to and removed from the back-end.
        """
        now = time.time()
        with self._locked():
            self._load()
            if self.apply:
                self.backend.check()
                self._reapply_if_recreated(now)
            active = self.active(now)
            added = sorted(set(active) - self._applied)
            removed = sorted(self._applied - set(self._blocks))
            self._add_quietly(added, now, "block_failed")
            self._remove_quietly(removed)
        return added, removed
