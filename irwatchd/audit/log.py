"""The audit log writer: one JSON line per record, each carrying the SHA-256 of the line before.

Field names follow the Elastic Common Schema where one exists (`@timestamp`, `event.*`,
`source.ip`, `user.name`, `rule.id`, `log.file.path`), so Filebeat or Vector can ship the file
as it is. The chain fields live under `irwatchd.audit`: `seq` counts from 1 and `prev_sha256`
is the SHA-256 of the previous line's bytes without its newline (64 zeros for the first line).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from irwatchd.parsing.timestamps import format_rfc3339

log = structlog.get_logger(__name__)

GENESIS = "0" * 64
SEVERITY_NUMBER = {"low": 1, "medium": 2, "high": 3, "critical": 4}


def _last_line(path: Path) -> bytes | None:
    """Return the last complete line of a file, without its newline, or None if it has none."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            position = size
            tail = b""
            while position > 0:
                step = min(65536, position)
                position -= step
                handle.seek(position)
                tail = handle.read(step) + tail
                body = tail[:-1] if tail.endswith(b"\n") else tail
                newline = body.rfind(b"\n")
                if newline >= 0:
                    return body[newline + 1 :]
            body = tail[:-1] if tail.endswith(b"\n") else tail
            return body or None
    except FileNotFoundError:
        return None


class AuditLog:
    """The single writer of the audit log; thread-safe, one `write` per record.

    Each record is written and flushed before `append` returns, and fsynced by `sync`, which
    the pipeline calls once per batch before it moves its file checkpoints forward.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        last = _last_line(path)
        self._seq = 0
        self._prev = GENESIS
        if last is not None:
            self._prev = hashlib.sha256(last).hexdigest()
            try:
                self._seq = int(json.loads(last)["irwatchd"]["audit"]["seq"])
            except (ValueError, KeyError, TypeError):
                log.warning(
                    "audit_tail_unreadable",
                    path=str(path),
                    hint="run `irwatchd audit verify` to find the damaged record",
                )
        self._handle = path.open("ab")
        if self._handle.tell() > 0 and last is not None:
            self._repair_partial_tail()
        self._dirty = False

    def _repair_partial_tail(self) -> None:
        # A crash can leave a last line without its newline; end it so the next record
        # starts on a line of its own.
        with self.path.open("rb") as reader:
            reader.seek(-1, os.SEEK_END)
            if reader.read(1) != b"\n":
                self._handle.write(b"\n")
                self._handle.flush()

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Add the chain fields and timestamp to `record`, write it as one line, and return it."""
        with self._lock:
            self._seq += 1
            record.setdefault("@timestamp", format_rfc3339(datetime.now(UTC)))
            record.setdefault("irwatchd", {})["audit"] = {"seq": self._seq, "prev_sha256": self._prev}
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
            self._handle.write(line + b"\n")
            self._handle.flush()
            self._prev = hashlib.sha256(line).hexdigest()
            self._dirty = True
            return record

    def sync(self) -> None:
        """fsync what was written since the last call."""
        with self._lock:
            if self._dirty:
                os.fsync(self._handle.fileno())
                self._dirty = False

    def close(self) -> None:
        """Sync and close the file."""
        self.sync()
        with self._lock:
            self._handle.close()


def recent_dedup_keys(path: Path, max_bytes: int = 32 << 20) -> set[str]:
    """Return the finding dedup keys in the last `max_bytes` of an audit log.

    After a crash, lines since the last checkpoint are read again; these keys let the
    responder recognise their findings and skip them instead of auditing them twice.
    """
    keys: set[str] = set()
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            if size > max_bytes:
                handle.readline()  # drop the first, probably partial, line
            for line in handle:
                if b'"dedup_key"' not in line:
                    continue
                try:
                    keys.add(json.loads(line)["irwatchd"]["dedup_key"])
                except (ValueError, KeyError, TypeError):
                    continue
    except FileNotFoundError:
        pass
    return keys
