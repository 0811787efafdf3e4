"""Findings as the rows `irwatchd detect` prints, built without a record per line.

`detect` prints seven fields per finding. On a raw syslog block (see `batch.walk_file`),
building a `LogRecord` and a `Finding` for each candidate line costs more than the rule
match itself, so `detect_rows` builds `DetectRow`s straight from the candidate lines. It runs the
same rules in the same order, splits the header the same way, and `attribute_rows` applies
the same process attribution as `attribute_stream`. Lines outside raw blocks still become
findings first. A test compares the rendered rows with the rendered findings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from json import dumps
from json.encoder import encode_basestring_ascii
from typing import BinaryIO, Final

from irwatchd.detection.batch import RawCandidates, StreamTotals, walk_file
from irwatchd.detection.engine import Detector
from irwatchd.detection.fields import FieldConfirmer
from irwatchd.detection.finding import Finding
from irwatchd.detection.newlines import count_newlines
from irwatchd.detection.process_context import (
    ATTRIBUTION_GROUP,
    LogTime,
    ProcessContext,
    ProcessKey,
    process_key,
    process_key_of,
)
from irwatchd.parsing.syslog import (
    RE2_SPACE,
    STAMP_PREFIX,
    StampTimes,
    parse_syslog,
    split_traditional,
)
from irwatchd.parsing.timestamps import format_rfc3339, parse_bsd

_MAX_CACHED_TIMES = 4096
_MAX_CACHED_SOURCES = 4096


DetectRow = tuple[int, str, str, str, str | None, str | None, datetime | None, ProcessKey | None]
"""One finding as `detect` prints it, with the process key that attribution needs.

The fields are line number, rule id, category, severity, source address, user, log time and
process key. A tuple takes a fifth of the time of a slotted dataclass instance to build
(0.09 µs against 0.5 µs, CPython 3.11 on the 2-core benchmark machine).
"""

SOURCE_IP: Final = 4
"""Position of the source address in a `DetectRow`."""


def row_from_finding(finding: Finding) -> DetectRow:
    """Return the row of a finding that `Detector` built."""
    record = finding.record
    return (
        record.line_number,
        finding.rule_id,
        finding.category,
        finding.severity,
        finding.source_ip,
        finding.user,
        record.time,
        process_key(record),
    )


def detect_rows(
    detector: Detector,
    stream: BinaryIO,
    source_type: str,
    path: str,
    max_line_bytes: int,
    *,
    now: datetime | None = None,
    totals: StreamTotals | None = None,
    lines_before: int = 0,
    offset_before: int = 0,
) -> Iterator[list[DetectRow]]:
    """Yield the rows of a stream in line order, in lists; the same findings as `detect_file`."""
    moment = now or datetime.now(UTC)
    builder = RawRowBuilder(detector, moment)
    pending: list[DetectRow] = []
    parts = walk_file(
        detector, stream, source_type, path, max_line_bytes, moment,
        totals=totals, lines_before=lines_before, offset_before=offset_before,
    )  # fmt: skip
    for part in parts:
        if isinstance(part, RawCandidates):
            builder.add_rows(part, pending)
        else:
            pending.append(row_from_finding(part))
        if len(pending) >= ATTRIBUTION_GROUP:
            yield pending
            pending = []
    if pending:
        yield pending


class RawRowBuilder:
    """Rows from the candidate lines of raw syslog blocks, as `_raw_findings` would find them."""

    def __init__(self, detector: Detector, moment: datetime) -> None:
        self._confirmer = FieldConfirmer(detector, "syslog")
        self._moment = moment
        # Times of the stamp prefixes that `split_stamp_prefix` accepts.
        self._times: dict[str, datetime | None] = {}
        self._stamp_times = StampTimes(moment)
        # `_source` of each `host tag[` seen.
        self._sources: dict[str, tuple[str, str] | tuple[()]] = {}

    def add_rows(self, part: RawCandidates, rows: list[DetectRow]) -> None:
        """Append the rows of the candidate lines of one raw block to `rows`, in line order."""
        confirm = self._confirmer.confirm
        header = self.header
        block = part.block
        # Without tab, form feed and CR, a header field contains no `\s` character that
        # `split_traditional` checks for, because lines contain no newline either.
        plain = b"\t" not in block and b"\f" not in block and b"\r" not in block
        number = part.number_base
        counted_to = 0
        for newline, rule_mask in part.candidates.items():
            start = block.rfind(b"\n", 0, newline) + 1
            number += count_newlines(block, counted_to, start)
            counted_to = start
            data = block[start:newline]
            # `walk_file` makes raw blocks only of valid UTF-8 lines that parse as syslog.
            text = data.decode()
            matches = confirm(data, text, rule_mask)
            if not matches:
                continue
            time, process = header(text, plain)
            for rule, user, source_ip in matches:
                row = (
                    number + 1, rule.id, rule.category, rule.severity, source_ip, user, time,
                    process,
                )  # fmt: skip
                rows.append(row)

    def line_rows(self, data: bytes, rule_mask: int, number: int) -> list[DetectRow]:
        """Return the rows of one line of a raw block, as `add_rows` builds them.

        `data` is the line without its newline and `number` its line number.
        """
        text = data.decode()
        matches = self._confirmer.confirm(data, text, rule_mask)
        if not matches:
            return []
        time, process = self.header(text, plain=False)
        return [
            (number, rule.id, rule.category, rule.severity, source_ip, user, time, process)
            for rule, user, source_ip in matches
        ]

    def stamp_minute(self, prefix: str) -> tuple[int, datetime | None]:
        """Return `StampTimes.minute_of` for the minute prefix `Mmm dd hh:mm:`."""
        return self._stamp_times.minute_of(prefix)

    def stamp_time(self, stamp: str) -> tuple[bool, datetime | None]:
        """Return (True, time) of a `STAMP_PREFIX`-character stamp that `header` splits."""
        return self._stamp_times.time_of(stamp)

    def header(self, text: str, plain: bool) -> tuple[datetime | None, ProcessKey | None]:
        """Return the time and process key that `_parsed_header` returns for a line.

        A line of the usual shape, `Mmm dd hh:mm:ss host tag[pid]: message`, is split here with
        a few string searches whose results match `split_traditional` step by step (a test
        compares the two). `plain` is true when the line contains no tab, form feed or CR.
        """
        stamp = text[:STAMP_PREFIX]
        if stamp in self._times:
            time = self._times[stamp]
        else:
            is_stamp, time = self._stamp_times.time_of(stamp)
            if not is_stamp:
                return self._parsed_header(text)
            if len(self._times) >= _MAX_CACHED_TIMES:
                self._times.clear()
            self._times[stamp] = time
        host_end = text.find(" ", STAMP_PREFIX)
        bracket = text.find("[", host_end)
        if host_end <= STAMP_PREFIX:
            return self._parsed_header(text)
        # `host tag[` decides everything about the host and the tag, and recurs on most lines.
        source = self._sources.get(text[STAMP_PREFIX : bracket + 1])
        if source is None:
            source = self.source(text[STAMP_PREFIX : bracket + 1])
        if not source:
            return self._parsed_header(text)
        pid_end = text.find("]", bracket)
        if pid_end < 0 or text[pid_end + 1 : pid_end + 2] != ":":
            return self._parsed_header(text)
        pid = text[bracket + 1 : pid_end]
        if " " in pid or not (plain or RE2_SPACE.isdisjoint(pid)):
            return self._parsed_header(text)
        host, tag = source
        return time, (host, tag, pid) if pid.isdigit() else None

    def source(self, prefix: str) -> tuple[str, str] | tuple[()]:
        """Return (host, tag) of a line that starts with a stamp and then `prefix`, `host tag[`.

        Return () when `split_traditional` would not split such a line as `_header` does. That
        is an empty host or tag, a tag with a space or `:`, whitespace, or a host of four
        digits (maybe a year). It is also a `tag[` inside the host, because `process_key_of`
        would look for the PID there. The result depends on the prefix alone, so it is kept.
        """
        host_end = prefix.find(" ")
        host = prefix[:host_end]
        tag = prefix[host_end + 1 : -1]
        valid = (
            host_end > 0
            and prefix.endswith("[")
            and tag != ""
            and " " not in tag
            and ":" not in tag
            and not (len(host) == 4 and host.isascii() and host.isdigit())
            and RE2_SPACE.isdisjoint(host)
            and RE2_SPACE.isdisjoint(tag)
            # The stamp has no `[` and the tag no space, so an earlier `tag[` in the line can
            # only lie inside the host.
            and prefix[host_end + 1 :] not in host
        )
        source: tuple[str, str] | tuple[()] = (host, tag) if valid else ()
        if len(self._sources) >= _MAX_CACHED_SOURCES:
            self._sources.clear()
        self._sources[prefix] = source
        return source

    def _parsed_header(self, text: str) -> tuple[datetime | None, ProcessKey | None]:
        """Return the time and process key of a line from `parse_syslog` and `process_key_of`."""
        split = split_traditional(text)
        if split is None:
            header = parse_syslog(text, self._moment)
            if header is None:
                return None, None
            return header.time, process_key_of("syslog", header.host, header.program, text)
        time = parse_bsd(split[0], split[1], split[2], None, self._moment)
        return time, process_key_of("syslog", split[3], split[4], text)


def attribute_rows(
    row_lists: Iterable[list[DetectRow]], context: ProcessContext, group: int = ATTRIBUTION_GROUP
) -> Iterator[list[DetectRow]]:
    """Attribute rows in groups of `group`, as `attribute_stream` does with findings."""
    pending: list[DetectRow] = []
    for rows in row_lists:
        pending.extend(rows)
        while len(pending) >= group:
            chunk, pending = pending[:group], pending[group:]
            _attribute_row_group(chunk, context)
            yield chunk
    if pending:
        _attribute_row_group(pending, context)
        yield pending


def _attribute_row_group(rows: list[DetectRow], context: ProcessContext) -> None:
    addresses = [row[SOURCE_IP] for row in rows]
    attributed = attribute_group(
        [row[7] for row in rows], [row[6] for row in rows], addresses, context
    )
    if attributed is not addresses:
        for index, (before, after) in enumerate(zip(addresses, attributed, strict=True)):
            if after is not before:
                number, rule_id, category, severity, _, user, time, process = rows[index]
                rows[index] = (number, rule_id, category, severity, after, user, time, process)


def attribute_group(
    processes: list[ProcessKey | None],
    times: list[LogTime | None],
    addresses: list[str | None],
    context: ProcessContext,
) -> list[str | None]:
    """Return the addresses of one group of findings after `ProcessContext.attribute`.

    The lists hold each finding's process key, log time and address, in line order. Return
    `addresses` itself when no finding lacks an address, else a new list.
    """
    if None not in addresses:
        context.remember_columns(processes, addresses, times)  # type: ignore[arg-type]
        return addresses
    result = list(addresses)
    for index, process in enumerate(processes):
        if process is None:
            continue
        address = result[index]
        if address is not None:
            context.remember(process, address, times[index])
        else:
            result[index] = context.recall(process, times[index])
    for index, process in enumerate(processes):
        if result[index] is None and process is not None:
            later = zip(
                processes[index + 1 :], times[index + 1 :], result[index + 1 :], strict=True
            )
            result[index] = context.address_ahead(process, times[index], later)
    return result


class RowRenderer:
    """Render rows as the JSON lines `detect` prints, the bytes `json.dumps` writes.

    Each rule's id, category and severity are encoded once. Every other string goes through
    the C encoder `json.dumps` itself uses, so attacker-written text is escaped the same way.
    """

    def __init__(self) -> None:
        self._rule_fields: dict[str, str] = {}
        # The JSON value of each recent log time, because rows of one second share a time.
        self._time_values: dict[datetime | None, str] = {}

    def render(self, rows: Iterable[DetectRow]) -> str:
        """Return one JSON object per row, each ending in a newline."""
        return "".join(self.render_lines(rows))

    def render_lines(self, rows: Iterable[DetectRow]) -> list[str]:
        """Return one JSON object per row, each ending in a newline, as a list."""
        lines = []
        rule_fields = self._rule_fields
        time_values = self._time_values
        for number, rule_id, category, severity, source_ip, user, time, _ in rows:
            fields = rule_fields.get(rule_id)
            if fields is None:
                fields = rule_fields[rule_id] = dumps(
                    {"rule": rule_id, "category": category, "severity": severity}
                )[1:-1]
            address = "null" if source_ip is None else encode_basestring_ascii(source_ip)
            name = "null" if user is None else encode_basestring_ascii(user)
            moment = time_values.get(time)
            if moment is None:
                moment = self._time_value(time)
            lines.append(
                f'{{"line": {number}, {fields}, "source_ip": {address}, '
                f'"user": {name}, "time": {moment}}}\n'
            )
        return lines

    def _time_value(self, time: datetime | None) -> str:
        stamp = format_rfc3339(time)
        value = "null" if stamp is None else encode_basestring_ascii(stamp)
        if len(self._time_values) >= _MAX_CACHED_TIMES:
            self._time_values.clear()
        self._time_values[time] = value
        return value

    @staticmethod
    def with_source_ip(line: str, address: str) -> str:
        """Return a rendered line that had no source address with `address` in its place.

        The first `"source_ip": null` in a line is that field: the fields before it are a
        number and JSON strings, and a quote inside a JSON string is escaped.
        """
        return line.replace(_NO_SOURCE, f'"source_ip": {encode_basestring_ascii(address)}', 1)


_NO_SOURCE = '"source_ip": null'
