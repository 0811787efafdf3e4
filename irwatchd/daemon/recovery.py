"""Record each finding once across crashes and failed writes.

At start, rebuild what a crash loses: which findings are recorded, and the correlation
windows.

Reading is at-least-once: after a crash, the lines after the last checkpoint are read again,
and their findings may be in the audit log already. The dedup keys of the finding records
written after that checkpoint (the checkpoint file stores the audit log's size at the time)
let the pipeline skip them. The sliding windows live in memory only, so the recent findings
of the audit log are counted into them again. Without that, an attack already reported as
brute_force would be reported again by the next few failures after the restart.
"""

from __future__ import annotations

import contextlib
import errno
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from irwatchd.audit.log import rotated_path
from irwatchd.correlation.windows import SlidingWindows
from irwatchd.detection.finding import Finding
from irwatchd.logger import get_logger
from irwatchd.parsing.record import LogRecord
from irwatchd.parsing.timestamps import parse_iso8601
from irwatchd.sources.checkpoints import AuditPosition

log = get_logger(__name__)

TAIL_BYTES = 32 << 20
"""Audit log bytes read for windows, and for dedup keys when no audit position was saved."""

MAX_CLOCK_SKEW = timedelta(hours=1)
"""The responder's rule: a log time further than this from the clock was not used for windows."""

_FINDING_MARK = b'"action":"finding"'


@dataclass(frozen=True, slots=True)
class Recovered:
    """The result of `recover`: keys of recorded findings, and the number counted again.

    `after_checkpoint` is the offset in the current audit file where the records written
    after the last checkpoint start, or None when that is unknown (no checkpoint, or the log
    rotated since).
    """

    seen_keys: set[str]
    replayed: int
    after_checkpoint: int | None = None


@dataclass(frozen=True, slots=True)
class RecordedFinding:
    """A finding rebuilt from its audit record, with the actions recorded for its incident.

    `recorded_actions` contains the `event.action` of every record (`ticket`, `alert`, `block`
    with outcome success) that names the incident after the same checkpoint.
    """

    finding: Finding
    moment: datetime
    incident_id: str
    recorded_actions: frozenset[str]


def recover(
    audit_path: Path, position: AuditPosition | None, windows: SlidingWindows, now: datetime
) -> Recovered:
    """Read the audit log's tail: collect dedup keys and count recent findings into `windows`.

    `position` is the audit log's (inode, size) when the checkpoints were last saved. Every
    finding recorded after it gives its key, also when the log rotated since. Without it
    (no checkpoint yet), the keys of the last `TAIL_BYTES` are taken instead.
    """
    try:
        current = audit_path.stat()
    except FileNotFoundError:
        return Recovered(set(), 0)
    replay_from = max(0, current.st_size - TAIL_BYTES)
    keys_from = replay_from
    after_checkpoint = None
    keys: set[str] = set()
    if position is not None and position[0] == current.st_ino and position[1] <= current.st_size:
        keys_from = after_checkpoint = position[1]
    elif position is not None:
        rotated = rotated_path(audit_path, 1)
        with contextlib.suppress(OSError):
            if rotated.stat().st_ino == position[0]:
                # The log rotated after the checkpoint: the keys start in the rotated file.
                # NOTE: windows are replayed from the current file only.
                keys.update(
                    _dedup_key(record) for _, record in _finding_records(rotated, position[1])
                )
                keys_from = 0
    horizon = max((spec.window_seconds for spec in windows.specs), default=0.0)
    correlation_names = {spec.name for spec in windows.specs}
    replayed = 0
    for offset, record in _finding_records(audit_path, min(keys_from, replay_from)):
        if offset >= keys_from:
            keys.add(_dedup_key(record))
        if offset < replay_from or record.get("rule", {}).get("id") in correlation_names:
            continue
        moment = _moment(record)
        if moment is None or (now - moment).total_seconds() > horizon:
            continue
        finding = _finding(record)
        if finding is not None:
            windows.observe(finding, moment)
            replayed += 1
    keys.discard("")
    log.info("audit_recovered", path=str(audit_path), dedup_keys=len(keys),
             findings_replayed=replayed, keys_from=keys_from)  # fmt: skip
    return Recovered(keys, replayed, after_checkpoint)


_ACTION_MARKS = (b'"action":"ticket"', b'"action":"alert"', b'"action":"block"')


def findings_after(audit_path: Path, start: int) -> Iterator[RecordedFinding]:
    """Yield each finding recorded from byte `start` of the audit log on, in order.

    The daemon rebuilds from them the tickets and alert files that a crash kept it from
    writing. The log is read twice: once for the action records, then for the findings.
    """
    recorded: dict[str, set[str]] = {}
    with audit_path.open("rb") as handle:
        handle.seek(start)
        for line in handle:
            if not any(mark in line for mark in _ACTION_MARKS):
                continue
            try:
                record = json.loads(line)
                event = record["event"]
                incident_id = record["irwatchd"]["incident_id"]
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(incident_id, str) and event.get("outcome") == "success":
                recorded.setdefault(incident_id, set()).add(str(event.get("action")))
    for _, record in _finding_records(audit_path, start):
        finding = _finding(record)
        moment = _moment(record)
        incident_id = record.get("irwatchd", {}).get("incident_id")
        if finding is None or moment is None or not isinstance(incident_id, str):
            continue
        actions = frozenset(recorded.get(incident_id, ()))
        yield RecordedFinding(finding, moment, incident_id, actions)


def _dedup_key(record: dict[str, Any]) -> str:
    key = record.get("irwatchd", {}).get("dedup_key")
    return key if isinstance(key, str) else ""


def _finding_records(path: Path, start: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (byte offset, record) for each finding record from `start` on."""
    with path.open("rb") as handle:
        if start > 0:
            handle.seek(start - 1)
            if handle.read(1) != b"\n":
                start += len(handle.readline())  # skip the rest of a line cut by `start`
        position = start
        for line in handle:
            line_start = position
            position += len(line)
            if _FINDING_MARK not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash; `irwatchd audit verify` reports it
            if isinstance(record, dict):
                yield line_start, record


def _moment(record: dict[str, Any]) -> datetime | None:
    """Return the time the responder counted the finding at: its log time, unless skewed."""
    written = parse_iso8601(str(record.get("@timestamp", "")))
    if written is None:
        return None
    created = record.get("event", {}).get("created")
    logged = parse_iso8601(created) if isinstance(created, str) else None
    if logged is not None and abs(logged - written) <= MAX_CLOCK_SKEW:
        return logged
    return written


def _finding(record: dict[str, Any]) -> Finding | None:
    """Rebuild the parts of a finding that correlation looks at."""
    try:
        detail = record["irwatchd"]
        event = record["event"]
        line = LogRecord(
            raw=str(event.get("original", "")),
            view=str(event.get("original", "")),
            source_type=str(detail.get("source_type", "syslog")),
            path=str(record.get("log", {}).get("file", {}).get("path", "-")),
            line_number=int(detail.get("line_number") or 0),
            offset=int(record.get("log", {}).get("offset", 0)),
            time=_moment(record),
            host=record.get("host", {}).get("name"),
        )
        return Finding(
            rule_id=str(record["rule"]["id"]),
            category=str(detail["category"]),
            severity=str(detail["severity"]),
            record=line,
            source_ip=record.get("source", {}).get("ip"),
            user=record.get("user", {}).get("name"),
            count=int(detail.get("count", 1)),
        )
    except (KeyError, TypeError, ValueError):
        return None


def write_failure_hint(error: OSError, state_dir: Path) -> str:
    """Return what to do about a failed write to the state directory."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = f"free space on the filesystem of {state_dir} (see `df -h {state_dir}`)"
    elif error.errno in (errno.EACCES, errno.EPERM):
        fix = f"give the daemon's user write permission on {state_dir}"
    elif error.errno == errno.EROFS:
        fix = f"remount the filesystem of {state_dir} read-write"
    else:
        fix = f"fix the error on {state_dir}"
    return (
        f"{fix}; irwatchd keeps running and reads the lines after the last checkpoint again "
        "on every poll until their findings are recorded"
    )
