"""Attribution across the lines of one process: sshd writes the client address on some of its
lines (`Invalid user x from ADDR`) and not on others of the same connection
(`input_userauth_request: invalid user x [preauth]`, `pam_unix(sshd:auth): check pass; user
unknown`). Each such connection runs in its own sshd process, so a finding without an address
takes the address of the last finding of the same host, program and PID.

Old PAM modules print `check pass; user unknown` before the line with `rhost=`, so within one
batch a finding that still has no address takes the next address its process shows, if that
comes within `lookahead_seconds`. The address still comes only from a server-written field of
another line of that process: this module never reads an address out of the line it attributes.
Entries expire after `max_age_seconds` of log time, and at most `max_processes` are kept, so a
reused PID cannot inherit an old address.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from datetime import datetime

from irwatchd.detection.finding import Finding
from irwatchd.detection.groups import in_groups
from irwatchd.parsing.record import LogRecord

_PROCESS_TYPES = frozenset({"syslog", "json"})

ProcessKey = tuple[str, str, str]
"""(host, program, PID) of the process that wrote a line."""

LogTime = datetime | int
"""A line's log time: a `datetime`, or whole microseconds since the Unix epoch.

The `detect --jobs` parent attributes with microseconds, so it builds no `datetime` per row.
One `ProcessContext` must be given only one of the two kinds.
"""

ATTRIBUTION_GROUP = 1024
"""Findings `attribute_stream` attributes together; the lookahead stays within one group."""


def process_key(record: LogRecord) -> ProcessKey | None:
    """Return (host, program, pid) of a syslog-shaped record, or None when it has no PID."""
    return process_key_of(record.source_type, record.host, record.program, record.view)


def process_key_of(
    source_type: str, host: str | None, program: str | None, view: str
) -> ProcessKey | None:
    """Return (host, program, pid) from a line's parsed fields, or None when it has no PID.

    The PID is the digits between the first `program[` in the view and the next `]`.
    """
    if source_type not in _PROCESS_TYPES or not program:
        return None
    tag = f"{program}["
    start = view.find(tag)
    if start < 0:
        return None
    start += len(tag)
    end = view.find("]", start)
    pid = view[start:end]
    if end < 0 or not pid.isdigit():
        return None
    return (host or "", program, pid)


class ProcessContext:
    """The last source address seen per (host, program, PID)."""

    def __init__(
        self,
        max_processes: int = 10_000,
        max_age_seconds: float = 600,
        lookahead_seconds: float = 10,
    ) -> None:
        self.max_processes = max_processes
        self.max_age_seconds = max_age_seconds
        self.lookahead_seconds = lookahead_seconds
        self._seen: OrderedDict[ProcessKey, tuple[str, LogTime | None]] = OrderedDict()

    def apply(self, finding: Finding) -> Finding:
        """Remember the finding's address, or give it the one its process showed earlier."""
        key = process_key(finding.record)
        if key is None:
            return finding
        if finding.source_ip is not None:
            self.remember(key, finding.source_ip, finding.record.time)
            return finding
        address = self.recall(key, finding.record.time)
        if address is None:
            return finding
        fields = finding.fields | {"source_ip_from": "process"}
        return dataclasses.replace(finding, source_ip=address, fields=fields)

    def remember(self, key: ProcessKey, address: str, moment: LogTime | None) -> None:
        """Store `address` as the last one process `key` showed, at log time `moment`."""
        self.remember_many(((key, address, moment),))

    def remember_many(
        self, entries: Iterable[tuple[ProcessKey | None, str, LogTime | None]]
    ) -> None:
        """Remember each (key, address, time) in order; entries without a key are skipped."""
        seen = self._seen
        for key, address, moment in entries:
            if key is None:
                continue
            seen[key] = (address, moment)
            seen.move_to_end(key)
            if len(seen) > self.max_processes:
                seen.popitem(last=False)

    def recall(self, key: ProcessKey, moment: LogTime | None) -> str | None:
        """Return the address process `key` showed last, unless it is older than the max age."""
        known = self._seen.get(key)
        if known is None:
            return None
        address, seen_at = known
        if moment is not None and seen_at is not None:
            age = _seconds_between(moment, seen_at)
            if age < 0 or age > self.max_age_seconds:
                return None
        return address

    def attribute(self, findings: Iterable[Finding]) -> list[Finding]:
        """Attribute a batch of findings in line order: earlier lines first, then later ones."""
        result = [self.apply(finding) for finding in findings]
        for index, finding in enumerate(result):
            if finding.source_ip is None:
                result[index] = self._look_ahead(finding, result[index + 1 :])
        return result

    def _look_ahead(self, finding: Finding, later: list[Finding]) -> Finding:
        key = process_key(finding.record)
        if key is None:
            return finding
        address = self.address_ahead(
            key,
            finding.record.time,
            ((process_key(item.record), item.record.time, item.source_ip) for item in later),
        )
        if address is None:
            return finding
        fields = finding.fields | {"source_ip_from": "process"}
        return dataclasses.replace(finding, source_ip=address, fields=fields)

    def address_ahead(
        self,
        key: ProcessKey,
        moment: LogTime | None,
        later: Iterable[tuple[ProcessKey | None, LogTime | None, str | None]],
    ) -> str | None:
        """Return the first address process `key` shows in `later` within the lookahead time.

        `later` contains (process key, log time, address) of the findings after this one.
        """
        for candidate_key, candidate_time, address in later:
            if address is None or candidate_key != key:
                continue
            if moment is not None and candidate_time is not None:
                gap = _seconds_between(candidate_time, moment)
                if gap < 0 or gap > self.lookahead_seconds:
                    return None
            return address
        return None


def _seconds_between(later: LogTime, earlier: LogTime) -> float:
    """Return the seconds from `earlier` to `later`, both datetimes or both microseconds.

    Both kinds give the same float: `timedelta.total_seconds` also divides whole microseconds
    by 10**6.
    """
    if isinstance(later, int) and isinstance(earlier, int):
        return (later - earlier) / 1_000_000
    if isinstance(later, datetime) and isinstance(earlier, datetime):
        return (later - earlier).total_seconds()
    raise TypeError(f"cannot compare log times {later!r} and {earlier!r} of different kinds")


def attribute_stream(
    findings: Iterable[Finding], context: ProcessContext, group: int = ATTRIBUTION_GROUP
) -> Iterator[Finding]:
    """Attribute a stream of findings in groups, so the lookahead works without holding it all."""
    for pending in in_groups(findings, group):
        yield from context.attribute(pending)
