"""Syslog headers: RFC 3164 (with or without year and fractions), ISO 8601 and RFC 5424."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
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


class SyslogHeader(msgspec.Struct, frozen=True, gc=False):
    """The parts of a syslog line that come before the message."""

    time: datetime | None
    host: str | None
    program: str | None
    pid: str | None
    message: str
    view: str


_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_DIGITS = frozenset("0123456789")
RE2_SPACE = frozenset("\t\n\f\r ")
"""What RE2's `\\s` matches: ASCII whitespace without the vertical tab."""


STAMP_PREFIX = 16
"""Length of the most common time prefix, `Mmm dd hh:mm:ss ` or `Mmm  d hh:mm:ss `."""
_MAX_CACHED_STAMPS = 512
_stamps: dict[str, tuple[str, str, str]] = {}
"""Time prefixes of `STAMP_PREFIX` characters already split, mapped to (month, day, clock).

Lines are written in time order, so consecutive lines share a prefix, and each split depends
on the prefix alone. A new second adds an entry, so a few hundred cover the lines in flight; as
with the memoised time parsers, a larger store only leaves more freed entries among the objects
that live on.
"""


def split_traditional(line: str) -> tuple[str, str, str, str, str, str | None, str] | None:
    """Split the most common header, `Mmm dd hh:mm:ss host tag[pid]: message`, without RE2.

    Return (month, day, clock, host, tag, pid, message) exactly as the `_HEADER` groups would
    be, or None for any other shape (a priority, a year, a fraction, a host of four digits,
    an odd tag), which `parse_syslog` then hands to RE2. A test compares the two on random
    lines. The header parse is most of the cost of a matching syslog line.
    """
    if "\n" in line:
        return None
    stamp = _stamps.get(line[:STAMP_PREFIX])
    if stamp is None:
        split = _split_stamp(line)
        if split is None:
            return None
        month, day, clock, host_start = split
        if host_start == STAMP_PREFIX:
            if len(_stamps) >= _MAX_CACHED_STAMPS:
                _stamps.clear()
            _stamps[line[:STAMP_PREFIX]] = (month, day, clock)
    else:
        month, day, clock = stamp
        host_start = STAMP_PREFIX
    host_end = line.find(" ", host_start)
    if host_end <= host_start:
        return None
    host = line[host_start:host_end]
    if len(host) == 4 and host.isascii() and host.isdigit():
        return None  # maybe a year after the clock
    if not RE2_SPACE.isdisjoint(host):
        return None
    tag_start = host_end + 1
    # The tag runs to the first space, `[` or `:`; other whitespace in it goes to RE2.
    tag_end = line.find(" ", tag_start)
    if tag_end < 0:
        tag_end = len(line)
    bracket = line.find("[", tag_start, tag_end)
    if bracket >= 0:
        tag_end = bracket
    colon = line.find(":", tag_start, tag_end)
    if colon >= 0:
        tag_end = colon
    if tag_end <= tag_start or tag_end == len(line):
        return None
    tag = line[tag_start:tag_end]
    if not RE2_SPACE.isdisjoint(tag):
        return None
    pid = None
    if line[tag_end] == ":":
        message_start = tag_end + 1
    elif line[tag_end] == "[":
        pid_end = line.find("]", tag_end + 1)
        if pid_end < 0 or line[pid_end + 1 : pid_end + 2] != ":":
            return None
        pid = line[tag_end + 1 : pid_end]
        if not RE2_SPACE.isdisjoint(pid):
            return None
        message_start = pid_end + 2
    else:
        return None
    return month, day, clock, host, tag, pid, line[message_start:]


def _split_stamp(line: str) -> tuple[str, str, str, int] | None:
    """Return (month, day, clock, host start) of a traditional time prefix, or None."""
    if len(line) < 16 or line[0] not in _UPPER or line[1] not in _LOWER or line[2] not in _LOWER:
        return None
    if line[3] != " ":
        return None
    position = 4
    while position < len(line) and line[position] == " ":
        position += 1
    if position + 2 >= len(line) or line[position] not in _DIGITS:
        return None
    day_end = position + 1 if line[position + 1] == " " else position + 2
    if day_end == position + 2 and (line[position + 1] not in _DIGITS or line[day_end] != " "):
        return None
    day = line[position:day_end]
    position = day_end + 1
    clock = line[position : position + 8]
    # isdigit() also accepts non-ASCII digits, so each digit check needs isascii() as well.
    if (
        len(clock) != 8
        or clock[2] != ":"
        or clock[5] != ":"
        or not clock.isascii()
        or not (clock[:2].isdigit() and clock[3:5].isdigit() and clock[6:].isdigit())
        or line[position + 8 : position + 9] != " "
    ):
        return None
    return line[:3], day, clock, position + 9


def split_stamp_prefix(line: str) -> tuple[str, str, str] | None:
    """Return (month, day, clock) when a line starts with a whole `STAMP_PREFIX`-character time.

    Such a prefix is a traditional time and the space after it, so the host starts right
    after it. `split_traditional` splits the time of every line with that prefix the same way,
    so callers may keep results per prefix. Return None for any other start.
    """
    split = _split_stamp(line[:STAMP_PREFIX])
    if split is None or split[3] != STAMP_PREFIX:
        return None
    return split[0], split[1], split[2]


MINUTE_PREFIX = 13
"""Length of a stamp prefix up to its seconds, `Mmm dd hh:mm:`."""
_MAX_CACHED_MINUTES = 1024
_SECONDS = tuple(timedelta(seconds=second) for second in range(60))


class StampTimes:
    """Times of stamp prefixes, as `split_stamp_prefix` and `parse_bsd` give them, kept per minute.

    Logs write a new second every few lines, so a time per whole stamp is built often. Here the
    stamp of each minute is parsed once, and a stamp's time is that minute's time plus its
    seconds. A minute in which the year guess of `parse_bsd` changes is parsed stamp by stamp.
    """

    def __init__(self, now: datetime) -> None:
        self._now = now
        # (kind, time at second 0) of each minute prefix seen.
        self._minutes: dict[str, tuple[int, datetime | None]] = {}

    def time_of(self, stamp: str) -> tuple[bool, datetime | None]:
        """Return (True, time) when `split_stamp_prefix` accepts `stamp`, else (False, None).

        The time is the one `parse_bsd` returns for the split stamp, which may be None.
        """
        kind, start = self.minute_of(stamp[:MINUTE_PREFIX])
        if kind == NOT_A_STAMP:
            return False, None
        seconds = stamp[MINUTE_PREFIX:STAMP_PREFIX]
        # `_split_stamp` accepts two ASCII digits and a space here. The minute passed the rest.
        if len(seconds) != 3 or seconds[2] != " " or not seconds.isascii():
            return False, None
        if not seconds[:2].isdigit():
            return False, None
        if kind == PER_STAMP:
            split = split_stamp_prefix(stamp)
            if split is None:  # pragma: no cover - the checks above accept the same stamps
                return False, None
            return True, parse_bsd(split[0], split[1], split[2], None, self._now)
        second = int(seconds[:2])
        if start is None or second >= len(_SECONDS):
            return True, None  # `datetime` rejects second 60 and up
        return True, start + _SECONDS[second]

    def minute_of(self, prefix: str) -> tuple[int, datetime | None]:
        """Return the kind of a minute prefix `Mmm dd hh:mm:` and, for `SECONDS_ADDED`, its time.

        `NOT_A_STAMP`: no stamp starts so. `SECONDS_ADDED`: a stamp's time is this time plus
        its seconds (None: every stamp of the minute has no time). `PER_STAMP`: the year
        guess changes within the minute, so each stamp is parsed on its own.
        """
        minute = self._minutes.get(prefix)
        if minute is None:
            minute = self._minute(prefix)
            if len(self._minutes) >= _MAX_CACHED_MINUTES:
                self._minutes.clear()
            self._minutes[prefix] = minute
        return minute

    def _minute(self, prefix: str) -> tuple[int, datetime | None]:
        split = split_stamp_prefix(prefix + "00 ")
        if split is None:
            return NOT_A_STAMP, None
        start = parse_bsd(split[0], split[1], split[2], None, self._now)
        if start is None:
            # An unknown month, an invalid date or clock, or 29 February in a year without one.
            # Every second of the minute shares it.
            return SECONDS_ADDED, None
        moved_back = start.year != self._now.year
        if not moved_back and start + _SECONDS[-1] - self._now > timedelta(days=1):
            return PER_STAMP, None  # the year guess changes within this minute
        return SECONDS_ADDED, start


# Kinds of minute in `StampTimes`.
NOT_A_STAMP = 0
SECONDS_ADDED = 1
PER_STAMP = 2


def parse_syslog(line: str, now: datetime) -> SyslogHeader | None:
    """Split a syslog line into its header fields, or return None when it has no known header.

    `view` is the text rules match: for traditional and ISO lines, the line itself, and for
    RFC 5424 lines the same `host program[pid]: message` shape, so one rule covers both.
    """
    common = split_traditional(line)
    if common is not None:
        return SyslogHeader(
            time=parse_bsd(common[0], common[1], common[2], None, now),
            host=common[3],
            program=common[4],
            pid=common[5],
            message=common[6].removeprefix(" "),
            view=line,
        )
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
            time=parse_iso8601(match[_TS5424]),
            host=None if host == "-" else host,
            program=None if program == "-" else program,
            pid=None if pid == "-" else pid,
            message=message,
            view=f"{host} {tag}: {message}",
        )
    if match[_ISO] is not None:
        moment = parse_iso8601(match[_ISO])
    else:
        moment = parse_bsd(
            match[_MON],
            match[_DAY],
            match[_CLOCK],
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
