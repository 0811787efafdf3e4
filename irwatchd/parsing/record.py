"""The parsed form of one log line, as the detector and the audit log see it."""

from __future__ import annotations

from datetime import datetime

import msgspec

SOURCE_TYPES = ("syslog", "access_log", "error_log", "json")
"""Source types a rule can name; `auto` is allowed only in the source config."""


class LogRecord(msgspec.Struct, frozen=True, gc=False):
    """One log line: where it came from, what the parser found, and the text rules match.

    `view` is what rule patterns run on. It is the raw line for syslog, and for access logs the
    normalised request, User-Agent and Referer. `client_ip` is set only from a field that the
    server itself wrote (the first field of an access log line). A frozen msgspec struct, not
    a dataclass, because one is built for every candidate line, about ten times faster.
    """

    raw: str
    view: str
    source_type: str
    path: str = "-"
    line_number: int = 0
    offset: int = 0
    time: datetime | None = None
    host: str | None = None
    program: str | None = None
    client_ip: str | None = None
    status: int | None = None
    raw_sha256: str | None = None
