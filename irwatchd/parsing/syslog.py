"""Syslog headers: traditional (RFC 3164, with or without year and fractions), ISO 8601, RFC 5424."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import re2

from irwatchd.parsing.re2match import Re2Pattern
from irwatchd.parsing.timestamps import parse_bsd, parse_iso8601

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False

# RE2 runs in time linear in the line, so attacker-written text cannot stall the header parse.
_HEADER = Re2Pattern(
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

_TS5424 = _HEADER.index["ts5424"]
_HOST5424 = _HEADER.index["host5424"]
_APP = _HEADER.index["app"]
_PROCID = _HEADER.index["procid"]
_MSG5424 = _HEADER.index["msg5424"]
_ISO = _HEADER.index["iso"]
_MON = _HEADER.index["mon"]
_DAY = _HEADER.index["day"]
_YEAR = _HEADER.index["year"]
_CLOCK = _HEADER.index["clock"]
_YEAR2 = _HEADER.index["year2"]
_HOST = _HEADER.index["host"]
_TAG = _HEADER.index["tag"]
_PID = _HEADER.index["pid"]
_MSG = _HEADER.index["msg"]


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
    if match[_TS5424] is not None:
        program = match[_APP]
        pid = match[_PROCID]
        host = match[_HOST5424]
        message = match[_MSG5424].removeprefix("\ufeff")  # type: ignore[union-attr]
        tag = program if pid in (None, "-") else f"{program}[{pid}]"
        return SyslogHeader(
            time=parse_iso8601(match[_TS5424]),  # type: ignore[arg-type]
            host=None if host == "-" else host,
            program=None if program == "-" else program,
            pid=None if pid == "-" else pid,
            message=message,
            view=f"{host} {tag}: {message}",
        )
    if match[_ISO] is not None:
        moment = parse_iso8601(match[_ISO])  # type: ignore[arg-type]
    else:
        moment = parse_bsd(
            match[_MON],  # type: ignore[arg-type]
            match[_DAY],  # type: ignore[arg-type]
            match[_CLOCK],  # type: ignore[arg-type]
            match[_YEAR] or match[_YEAR2],
            now,
        )
    return SyslogHeader(
        time=moment,
        host=match[_HOST],
        program=match[_TAG],
        pid=match[_PID],
        message=match[_MSG].removeprefix(" "),  # type: ignore[union-attr]
        view=line,
    )
