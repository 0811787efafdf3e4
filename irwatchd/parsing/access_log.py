"""Access logs in the Apache/nginx "combined" and "common" formats."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import re2

from irwatchd.parsing.re2match import Re2Pattern
from irwatchd.parsing.timestamps import parse_clf

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False

_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_COMBINED = Re2Pattern(
    r"^(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "
    + _QUOTED.replace("(", "(?P<request>", 1)
    + r" (?P<status>\d{3}|-) (?P<size>\d+|-)"
    + r"(?: "
    + _QUOTED.replace("(", "(?P<referer>", 1)
    + " "
    + _QUOTED.replace("(", "(?P<agent>", 1)
    + ")?",
    _OPTIONS,
)

_CLIENT = _COMBINED.index["client"]
_USER = _COMBINED.index["user"]
_TIME = _COMBINED.index["time"]
_REQUEST = _COMBINED.index["request"]
_STATUS = _COMBINED.index["status"]
_REFERER = _COMBINED.index["referer"]
_AGENT = _COMBINED.index["agent"]


@dataclass(frozen=True, slots=True)
class AccessEntry:
    """The fields of one access-log line, still escaped the way the server wrote them."""

    client: str
    user: str | None
    time: datetime | None
    method: str
    target: str
    protocol: str
    status: int | None
    referer: str
    agent: str


def parse_access(line: str) -> AccessEntry | None:
    """Split a combined or common log format line, or return None when it is neither."""
    match = _COMBINED.search(line)
    if match is None:
        return None
    request: str = match[_REQUEST]  # type: ignore[assignment]
    method, _, rest = request.partition(" ")
    target, _, protocol = rest.rpartition(" ")
    if not protocol.startswith("HTTP/"):
        # A request line without a protocol (HTTP/0.9 or garbage) is all target.
        target, protocol = rest, ""
    user = match[_USER]
    status = match[_STATUS]
    return AccessEntry(
        client=match[_CLIENT],  # type: ignore[arg-type]
        user=None if user == "-" else user,
        time=parse_clf(match[_TIME]),
        method=method,
        target=target,
        protocol=protocol,
        status=None if status == "-" else int(status),  # type: ignore[arg-type]
        referer=match[_REFERER] or "",
        agent=match[_AGENT] or "",
    )
