"""Apache and nginx error logs: the time and the client address the server wrote."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import re2

from irwatchd.parsing.timestamps import parse_bsd

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False

# Apache 2.4: [Fri Sep 09 10:42:29.902022 2011] [core:error] [pid 1:tid 2] [client 1.2.3.4:5] msg
_APACHE = re2.compile(
    r"^\[\w{3} (?P<mon>\w{3}) +(?P<day>\d{1,2}) (?P<clock>[\d:.]+) (?P<year>\d{4})\]"
    r"(?: \[[^\]]*\]){1,2}(?: \[client (?P<client>[^\]\s]+)\])?",
    _OPTIONS,
)
# nginx: 2024/03/08 15:14:19 [error] 1234#0: *1 message, client: 1.2.3.4, server: x, ...
_NGINX = re2.compile(r"^(?P<date>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[\w+\] \d+#\d+: ", _OPTIONS)
_NGINX_CLIENT = re2.compile(r", client: (?P<client>[^,\s]+), server: ", _OPTIONS)


@dataclass(frozen=True, slots=True)
class ErrorEntry:
    """The server-written time and client of one error-log line."""

    time: datetime | None
    client: str | None


def parse_error(line: str, now: datetime) -> ErrorEntry | None:
    """Parse an Apache or nginx error-log line, or return None when it is neither."""
    match = _APACHE.search(line)
    if match is not None:
        moment = parse_bsd(
            match.group("mon"), match.group("day"), match.group("clock"), match.group("year"), now
        )
        return ErrorEntry(moment, match.group("client"))
    match = _NGINX.search(line)
    if match is None:
        return None
    try:
        moment = datetime.strptime(match.group("date"), "%Y/%m/%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        moment = None
    # The message before `, client:` can hold request text, so an attacker can write a fake
    # `, client: X, server: ` there. nginx writes the real one after the message and before
    # `, request: "`, so take the last occurrence in the text before that.
    head = line.rpartition(', request: "')[0] or line
    clients = [found.group("client") for found in _NGINX_CLIENT.finditer(head)]
    # NOTE: a request line that itself contains `, request: "` can still move this choice.
    return ErrorEntry(moment, clients[-1] if clients else None)
