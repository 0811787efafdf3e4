"""Syslog headers: traditional (RFC 3164, with or without year and fractions), ISO 8601, RFC 5424."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import re2

from irwatchd.parsing.timestamps import parse_bsd, parse_iso8601

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False

# RE2 runs in time linear in the line, so attacker-written text cannot stall the header parse.
_HEADER = re2.compile(
    r"^(?:<\d{1,3}>)?"
    r"(?:"
    r"1 (?P<ts5424>\S+) (?P<host5424>\S+) (?P<app>\S+) (?P<procid>\S+) \S+ "
    r"(?:-|(?:\[(?:[^\]\\]|\\.)*\])+) ?(?P<msg5424>.*)"
    r"|"
    r"(?:(?P<iso>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d\S*)"
    r"|(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?:(?P<year>\d{4}) )?"
    r"(?P<clock>\d\d:\d\d:\d\d(?:\.\d{1,9})?)(?: (?P<year2>\d{4}))?)"
    r" (?P<host>\S+) (?P<tag>[^\s\[:]+)(?:\[(?P<pid>[^\]\s]*)\])?:(?P<msg>.*)"
    r")$",
    _OPTIONS,
)


@dataclass(frozen=True, slots=True)
class SyslogHeader:
    """The parts of a syslog line that come before the message."""

    time: datetime | None
    host: str | None
    program: str | None
    pid: str | None
    message: str
    view: str


def parse_syslog(line: str, now: datetime) -> SyslogHeader | None:
    """Split a syslog line into its header fields, or return None when it has no known header.

    `view` is the text rules match: for traditional and ISO lines, the line itself, and for
    RFC 5424 lines the same `host program[pid]: message` shape, so one rule covers both.
    """
    match = _HEADER.search(line)
    if match is None:
        return None
    if match.group("ts5424") is not None:
        program = match.group("app")
        pid = match.group("procid")
        host = match.group("host5424")
        message = match.group("msg5424").removeprefix("\ufeff")
        tag = program if pid in (None, "-") else f"{program}[{pid}]"
        return SyslogHeader(
            time=parse_iso8601(match.group("ts5424")),
            host=None if host == "-" else host,
            program=None if program == "-" else program,
            pid=None if pid == "-" else pid,
            message=message,
            view=f"{host} {tag}: {message}",
        )
    if match.group("iso") is not None:
        moment = parse_iso8601(match.group("iso"))
    else:
        moment = parse_bsd(
            match.group("mon"),
            match.group("day"),
            match.group("clock"),
            match.group("year") or match.group("year2"),
            now,
        )
    return SyslogHeader(
        time=moment,
        host=match.group("host"),
        program=match.group("tag"),
        pid=match.group("pid"),
        message=match.group("msg").removeprefix(" "),
        view=line,
    )
