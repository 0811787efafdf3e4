"""journald's `journalctl -o json` export: one JSON object per line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from irwatchd.parsing.timestamps import parse_iso8601


@dataclass(frozen=True, slots=True)
class JsonEntry:
    """A JSON log object reduced to the fields detection uses."""

    time: datetime | None
    host: str | None
    program: str | None
    view: str


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(item, int) for item in value):
        # journald exports a message that is not valid UTF-8 as a list of byte values.
        return bytes(item & 0xFF for item in value).decode("utf-8", "replace")
    return str(value)


def parse_json(line: str) -> JsonEntry | None:
    """Parse a journald export object, or a generic JSON log object with a message field."""
    try:
        document = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    if "MESSAGE" in document:
        moment = None
        realtime = _text(document.get("__REALTIME_TIMESTAMP"))
        if realtime and realtime.isdigit():
            moment = datetime.fromtimestamp(int(realtime) / 1_000_000, tz=UTC)
        host = _text(document.get("_HOSTNAME"))
        program = _text(document.get("SYSLOG_IDENTIFIER") or document.get("_COMM"))
        pid = _text(document.get("SYSLOG_PID") or document.get("_PID"))
        message = _text(document.get("MESSAGE")) or ""
        tag = f"{program}[{pid}]" if pid else f"{program}"
        # The view has the syslog shape, so syslog rules apply to journald unchanged.
        return JsonEntry(moment, host, program, f"{host or '-'} {tag}: {message}")
    text: str | None = None
    for key in ("message", "msg", "log"):
        if isinstance(document.get(key), str):
            text = document[key]
            break
    moment = None
    for key in ("@timestamp", "timestamp", "time", "ts"):
        if isinstance(document.get(key), str):
            moment = parse_iso8601(document[key])
            break
    host = _text(document.get("host") or document.get("hostname"))
    return JsonEntry(moment, host, None, text if text is not None else line)
