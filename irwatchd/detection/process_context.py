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
from irwatchd.parsing.record import LogRecord

_PROCESS_TYPES = frozenset({"syslog", "json"})


def process_key(record: LogRecord) -> tuple[str, str, str] | None:
    """Return (host, program, pid) of a syslog-shaped record, or None when it has no PID."""
    if record.source_type not in _PROCESS_TYPES or not record.program:
        return None
    tag = f"{record.program}["
    start = record.view.find(tag)
    if start < 0:
        return None
    start += len(tag)
    end = record.view.find("]", start)
    pid = record.view[start:end]
    if end < 0 or not pid.isdigit():
        return None
    return (record.host or "", record.program, pid)


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
        self._seen: OrderedDict[tuple[str, str, str], tuple[str, datetime | None]] = OrderedDict()

    def apply(self, finding: Finding) -> Finding:
        """Remember the finding's address, or give it the one its process showed earlier."""
        key = process_key(finding.record)
        if key is None:
            return finding
        moment = finding.record.time
        if finding.source_ip is not None:
            self._seen[key] = (finding.source_ip, moment)
            self._seen.move_to_end(key)
            if len(self._seen) > self.max_processes:
                self._seen.popitem(last=False)
            return finding
        known = self._seen.get(key)
        if known is None:
            return finding
        address, seen_at = known
        if moment is not None and seen_at is not None:
            age = (moment - seen_at).total_seconds()
            if age < 0 or age > self.max_age_seconds:
                return finding
        fields = finding.fields | {"source_ip_from": "process"}
        return dataclasses.replace(finding, source_ip=address, fields=fields)

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
        for candidate in later:
            if candidate.source_ip is None or process_key(candidate.record) != key:
                continue
            start, end = finding.record.time, candidate.record.time
            if start is not None and end is not None:
                gap = (end - start).total_seconds()
                if gap < 0 or gap > self.lookahead_seconds:
                    return finding
            fields = finding.fields | {"source_ip_from": "process"}
            return dataclasses.replace(finding, source_ip=candidate.source_ip, fields=fields)
        return finding


def attribute_stream(
    findings: Iterable[Finding], context: ProcessContext, group: int = 1024
) -> Iterator[Finding]:
    """Attribute a stream of findings in groups, so the lookahead works without holding it all."""
    pending: list[Finding] = []
    for finding in findings:
        pending.append(finding)
        if len(pending) >= group:
            yield from context.attribute(pending)
            pending = []
    if pending:
        yield from context.attribute(pending)
