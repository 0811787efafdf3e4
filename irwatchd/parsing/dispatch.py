"""Choose the parser for a line by source type (or guess it) and build its `LogRecord`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from irwatchd.detection.normalize import normalise_header, normalise_target
from irwatchd.parsing.access_log import parse_access
from irwatchd.parsing.error_log import parse_error
from irwatchd.parsing.journald import parse_json
from irwatchd.parsing.record import LogRecord
from irwatchd.parsing.syslog import parse_syslog

_MONTH_INITIALS = frozenset("JFMASOND")


def guess_source_type(line: str) -> str:
    """Guess a line's source type from how it starts; the guess costs a few string checks."""
    if not line:
        return "syslog"
    first = line[0]
    if first == "{":
        return "json"
    if first == "<" or first in _MONTH_INITIALS:
        return "syslog"
    if line.startswith(("type=", "node=")):
        return "syslog"  # auditd's own log format: audit.log records carry no syslog header
    if first == "[":
        return "error_log"
    if first.isdigit() and len(line) > 10 and line[4] == "/" and line[7] == "/":
        return "error_log"  # nginx: 2024/03/08 ...
    if first.isdigit() and len(line) > 10 and line[4] == "-" and line[10] in "T ":
        return "syslog"  # ISO 8601 header
    return "access_log"


def access_view(method: str, target: str, referer: str, agent: str) -> str:
    """Build the text web rules match: `METHOD target`, then ` ua:` and ` ref:` sections."""
    view = f"{method.lower()} {normalise_target(target)}"
    agent_view = normalise_header(agent)
    referer_view = normalise_header(referer)
    return f"{view} ua:{agent_view} ref:{referer_view}"


def parse_line(
    raw: str,
    source_type: str,
    now: datetime,
    *,
    path: str = "-",
    line_number: int = 0,
    offset: int = 0,
    raw_sha256: str | None = None,
) -> LogRecord:
    """Parse one decoded line; a line that does not fit its type keeps the raw text as its view."""
    kind = guess_source_type(raw) if source_type == "auto" else source_type
    where: dict[str, Any] = {
        "path": path,
        "line_number": line_number,
        "offset": offset,
        "raw_sha256": raw_sha256,
    }
    if kind == "access_log":
        entry = parse_access(raw)
        if entry is not None:
            return LogRecord(
                raw=raw,
                view=access_view(entry.method, entry.target, entry.referer, entry.agent),
                source_type=kind,
                time=entry.time,
                client_ip=entry.client,
                status=entry.status,
                **where,
            )
    elif kind == "syslog":
        header = parse_syslog(raw, now)
        if header is not None:
            return LogRecord(
                raw=raw,
                view=header.view,
                source_type=kind,
                time=header.time,
                host=header.host,
                program=header.program,
                **where,
            )
    elif kind == "json":
        entry_json = parse_json(raw)
        if entry_json is not None:
            return LogRecord(
                raw=raw,
                view=entry_json.view.replace("\n", " "),
                source_type=kind,
                time=entry_json.time,
                host=entry_json.host,
                program=entry_json.program,
                **where,
            )
    elif kind == "error_log":
        entry_error = parse_error(raw, now)
        if entry_error is not None:
            return LogRecord(
                raw=raw,
                view=raw,
                source_type=kind,
                time=entry_error.time,
                client_ip=entry_error.client,
                **where,
            )
    return LogRecord(raw=raw, view=raw, source_type=kind, **where)
