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
reused PID cannot inherit an old address. `attribute_stream`, which reads one file, also
drops the entries that old behind the last line of each group, so a line written more than
`max_age_seconds` out of time order may find no address that an in-order line would have found.
"""

from __future__ import annotations

import functools
import operator
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from itertools import compress, repeat, starmap

import msgspec.structs

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

_MAX_QUEUED = 4096
"""Entries `remember_columns` queues before it applies them.

Each queued entry keeps its row's objects alive, so a longer queue costs memory. In `detect`
workers on the 1,000,000-line benchmark auth.log, 16,384 entries took 4 MiB more at peak
than settling every record of about 1,000 rows. 4096 entries take about 1 MiB more.
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
        # Columns `remember_columns` queued, which `settle` applies to `_seen`.
        self._queued_keys: list[ProcessKey | None] = []
        self._queued_addresses: list[str] = []
        self._queued_moments: list[LogTime | None] = []

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
        return msgspec.structs.replace(finding, source_ip=address, fields=fields)

    def remember(self, key: ProcessKey, address: str, moment: LogTime | None) -> None:
        """Store `address` as the last one process `key` showed, at log time `moment`."""
        self.remember_many(((key, address, moment),))

    def remember_many(
        self, entries: Iterable[tuple[ProcessKey | None, str, LogTime | None]]
    ) -> None:
        """Remember each (key, address, time) in order; entries without a key are skipped."""
        self.settle()
        seen = self._seen
        for key, address, moment in entries:
            if key is None:
                continue
            seen[key] = (address, moment)
            seen.move_to_end(key)
            if len(seen) > self.max_processes:
                seen.popitem(last=False)

    def remember_columns(
        self,
        keys: Sequence[ProcessKey | None],
        addresses: Sequence[str],
        moments: Sequence[LogTime | None],
    ) -> None:
        """Remember the entries of three columns in order, as `remember_many` does.

        The `detect --jobs` parent remembers every finding, so the columns are only queued
        here, and `settle` applies them when an address is recalled or the queue is long.
        """
        self._queued_keys += keys
        self._queued_addresses += addresses
        self._queued_moments += moments
        if len(self._queued_keys) >= _MAX_QUEUED:
            self.settle()

    def entries(self) -> list[tuple[ProcessKey, tuple[str, LogTime | None]]]:
        """Return the stored (key, (address, time)) pairs, least recently remembered first."""
        self.settle()
        return list(self._seen.items())

    def settle(self) -> None:
        """Apply the queued columns with no Python loop per entry.

        The context is a least-recently-used store, so after any run of entries it contains the
        `max_processes` keys remembered last, each with its last address and time, in the
        order of their last use. Only the queue's last `max_processes` distinct keys are
        applied, because the others would be evicted again.
        """
        if not self._queued_keys:
            return
        keys, addresses, moments = self._queued_keys, self._queued_addresses, self._queued_moments
        self._queued_keys, self._queued_addresses, self._queued_moments = [], [], []
        known: Sequence[ProcessKey] = keys  # type: ignore[assignment]
        if None in keys:
            present = list(map(operator.is_not, keys, repeat(None)))
            known = list(compress(keys, present))  # type: ignore[arg-type]
            addresses = list(compress(addresses, present))
            moments = list(compress(moments, present))
        last_values = dict(zip(known, zip(addresses, moments, strict=True), strict=True))
        recent = list(dict.fromkeys(reversed(known)))[: self.max_processes]
        recent.reverse()
        seen = self._seen
        forget = functools.partial(seen.pop, default=None)
        deque(map(forget, recent), maxlen=0)
        seen.update(zip(recent, map(last_values.__getitem__, recent), strict=True))
        overflow = len(seen) - self.max_processes
        if overflow > 0:
            deque(starmap(seen.popitem, repeat((False,), overflow)), maxlen=0)

    def expire(self, now: LogTime) -> None:
        """Drop the least recently remembered entries while they are older than the max age.

        `recall` refuses them for any line at `now` or later. Without this, a log with a new
        PID on every line keeps `max_processes` entries, most of them too old to use. On the
        auth.log of `bench/generate.py`, the 10,000 entries took 4 MiB of a scan's peak RSS.
        `attribute_stream` calls it after each group of one file. The daemon does not: one
        context serves all its files, whose clocks may differ, and a file ahead of the others
        would drop the entries of the rest. Nor does the row path of `detect`: its workers hand
        their last `max_processes` entries to the next range, which must not depend on where
        the ranges end.
        """
        seen = self._seen
        while seen:
            key, (_, seen_at) = next(iter(seen.items()))
            if seen_at is None or type(seen_at) is not type(now):
                return
            if _seconds_between(now, seen_at) <= self.max_age_seconds:
                return
            del seen[key]

    def recall(self, key: ProcessKey, moment: LogTime | None) -> str | None:
        """Return the address process `key` showed last, unless it is older than the max age."""
        self.settle()
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
        return msgspec.structs.replace(finding, source_ip=address, fields=fields)

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
    """Attribute the findings of one file in groups, so the lookahead works without holding it all.

    After each group, the entries too old for the lines that follow are dropped (`expire`).
    The stream is one file, so its times run on one clock. The daemon's context serves every
    watched file, and it does not drop entries by time.
    """
    for pending in in_groups(findings, group):
        yield from context.attribute(pending)
        latest = next((item.record.time for item in reversed(pending) if item.record.time), None)
        if latest is not None:
            context.expire(latest)
