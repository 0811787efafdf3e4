"""Blocks: which addresses are blocked until when, persisted in the state directory.

The store is the source of truth; a back-end applies its changes to a firewall. `simulate`
applies nothing, so a block is only a record (the default, safe for a first run).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from irwatchd.detection.addresses import parse_address
from irwatchd.jsonfiles import read_json, write_json_atomic
from irwatchd.response.allowlist import Allowlist

log = structlog.get_logger(__name__)


class BlockBackend(Protocol):
    """Something that enforces blocks: a firewall, a command, or nothing at all."""

    name: str

    def add(self, address: str, seconds: float) -> None:
        """Block an address for `seconds`."""

    def remove(self, address: str) -> None:
        """Lift a block; lifting one that is absent is not an error."""


class SimulatedBackend:
    """A back-end that only records: nothing reaches a firewall."""

    name = "simulate"

    def add(self, address: str, seconds: float) -> None:
        """Do nothing: the block store already holds the record."""

    def remove(self, address: str) -> None:
        """Do nothing: the block store already dropped the record."""


@dataclass(frozen=True, slots=True)
class BlockResult:
    """What a block request did: `blocked`, `already_blocked`, `allowlisted` or `invalid`."""

    outcome: str
    address: str
    expires_at: float | None = None


class BlockStore:
    """Active blocks with expiry, saved to `blocks.json` on every change."""

    def __init__(self, path: Path, backend: BlockBackend, allowlist: Allowlist) -> None:
        self.path = path
        self.backend = backend
        self.allowlist = allowlist
        self._blocks: dict[str, dict[str, object]] = read_json(path, {})

    def active(self, now: float | None = None) -> dict[str, dict[str, object]]:
        """Return the blocks that have not expired."""
        moment = time.time() if now is None else now
        return {
            address: entry
            for address, entry in self._blocks.items()
            if float(entry["expires_at"]) > moment  # type: ignore[arg-type]
        }

    def block(self, address: str, seconds: float, reason: str, incident_id: str | None) -> BlockResult:
        """Block an address unless it is invalid, allowlisted or already blocked."""
        parsed = parse_address(address)
        if parsed is None:
            return BlockResult("invalid", address)
        canonical = str(parsed)
        if self.allowlist.contains(canonical):
            return BlockResult("allowlisted", canonical)
        now = time.time()
        current = self._blocks.get(canonical)
        if current is not None and float(current["expires_at"]) > now:  # type: ignore[arg-type]
            return BlockResult("already_blocked", canonical, float(current["expires_at"]))  # type: ignore[arg-type]
        self.backend.add(canonical, seconds)
        expires_at = now + seconds
        self._blocks[canonical] = {
            "address": canonical,
            "blocked_at": now,
            "expires_at": expires_at,
            "reason": reason,
            "incident_id": incident_id,
            "backend": self.backend.name,
        }
        write_json_atomic(self.path, self._blocks)
        return BlockResult("blocked", canonical, expires_at)

    def unblock(self, address: str) -> bool:
        """Lift a block; return whether one was active. Absent blocks are not an error."""
        parsed = parse_address(address)
        canonical = str(parsed) if parsed is not None else address
        entry = self._blocks.pop(canonical, None)
        self.backend.remove(canonical)
        write_json_atomic(self.path, self._blocks)
        return entry is not None

    def expire(self, now: float | None = None) -> list[str]:
        """Drop expired blocks and return their addresses."""
        moment = time.time() if now is None else now
        expired = [
            address
            for address, entry in self._blocks.items()
            if float(entry["expires_at"]) <= moment  # type: ignore[arg-type]
        ]
        for address in expired:
            self._blocks.pop(address)
            self.backend.remove(address)
        if expired:
            write_json_atomic(self.path, self._blocks)
        return expired
