"""Run the detector over a whole stream of lines in batches, as `detect`, `scan` and `eval` do.

`detect_file` is the fast path for files. For syslog it prefilters the raw bytes of each
block of lines with the rules' Hyperscan database and parses only the lines the database
names, because a syslog line's view (the text rules match) is the line itself. A block whose
lines might have a different view, or whose bytes need the per-line decoding rules of
`iter_lines` (invalid UTF-8, CR, over-long lines), takes the per-line path, which parses every
line. Both paths give the same findings: a test compares them on the evaluation corpus.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from itertools import accumulate
from typing import BinaryIO

import re2

from irwatchd.detection.engine import MAX_VIEW_CHARS, Detector
from irwatchd.detection.finding import Finding
from irwatchd.detection.groups import in_groups
from irwatchd.detection.native_confirm import native_confirmer
from irwatchd.detection.newlines import count_newlines
from irwatchd.parsing.dispatch import access_view, parse_line
from irwatchd.parsing.record import LogRecord
from irwatchd.sources.lines import RawLine, iter_lines, lines_within

BATCH_LINES = 8192
"""Lines per detector call; large enough that the prefilter scan dominates the Python work."""

READ_BYTES = 256 << 10
"""Bytes read per call in `detect_file`; the complete lines among them form one block.

A larger block saves little time but adds to peak RSS: 1 MiB blocks cost 7 MiB more than
256 KiB blocks for `irwatchd detect` on the benchmark logs (GNU time, 2-core machine).
"""

_LATIN1 = re2.Options()
_LATIN1.encoding = re2.Options.Encoding.LATIN1
_LATIN1.log_errors = False
# A line start that shows the line might not be its own syslog view, found in one linear RE2
# pass over a block: a line that starts like RFC 5424 (`<PRI>` or `1 `). With `auto` it is
# also a line whose first byte is not a month initial, because `guess_source_type` could then
# guess another type. `_is_raw_view_block` checks the first line and CR on their own, so every
# match starts with a newline. RE2 then skips ahead from newline to newline. That took 0.016 ms
# per 256 KiB block of auth.log, against 0.4 ms for one pattern that also matches CR
# (google-re2 1.1, CPython 3.11, timeit on the 2-core benchmark machine).
_NOT_RAW_VIEW = {
    "syslog": re2.compile(rb"\n(?:<|1 )", _LATIN1),
    "auto": re2.compile(rb"\n[^JFMASOND]", _LATIN1),
}
_NOT_RAW_VIEW_FIRST_LINE = {
    "syslog": re2.compile(rb"\A(?:<|1 )", _LATIN1),
    "auto": re2.compile(rb"\A[^JFMASOND]", _LATIN1),
}

# A line that `guess_source_type` would not guess to be an access-log line, found in one
# linear RE2 pass over an ASCII block. Such a line is empty, starts like JSON, syslog, an
# Apache error log or an auditd record, or starts with the date of an nginx error log or an
# ISO syslog header.
_NOT_ACCESS_LOG = re2.compile(
    rb"(?:\A|\n)(?:\n|[{<\[JFMASOND]|type=|node="
    rb"|[0-9][^\n]{3}/[^\n]{2}/[^\n]{3}|[0-9][^\n]{3}-[^\n]{5}[T ])",
    _LATIN1,
)


# A block whose every line has the simple combined shape that `combined_access_view` accepts,
# checked in one linear RE2 pass. Such a line is printable ASCII without a backslash. It has
# three tokens without a space, a `[time]` without `]` inside and a quoted request. Then come
# a status of `-` or three digits, a size of `-` or digits, and a quoted referer and agent
# that end the line. In the classes, 0x22 is `"`, 0x5c is a backslash and 0x5d is `]`.
_SIMPLE_ACCESS_LINES = re2.compile(
    rb"(?:"
    rb"[\x21\x23-\x5b\x5d-\x7e]+ [\x21\x23-\x5b\x5d-\x7e]+ [\x21\x23-\x5b\x5d-\x7e]+ "
    rb"\[[\x20\x21\x23-\x5b\x5e-\x7e]+\] "
    rb'"[\x20\x21\x23-\x5b\x5d-\x7e]*" (?:-|[0-9]{3}) (?:-|[0-9]+) '
    rb'"[\x20\x21\x23-\x5b\x5d-\x7e]*" "[\x20\x21\x23-\x5b\x5d-\x7e]*"\n'
    rb")*",
    _LATIN1,
)


@dataclass
class StreamTotals:
    """Counters `detect_file` fills in while it reads: lines read, and how many took each path."""

    lines: int = 0
    fast_lines: int = 0
    parsed_lines: int = 0
    truncated_lines: int = 0
    """Lines longer than `max_line_bytes`, whose rest was skipped."""
    first_truncated_line: int | None = None
    """The number of the first such line in the file, counted from 1."""


def records_from(
    lines: Iterable[RawLine], source_type: str, path: str, now: datetime | None = None
) -> Iterator[LogRecord]:
    """Parse raw lines into records."""
    moment = now or datetime.now(UTC)
    for line in lines:
        yield parse_line(
            line.text,
            source_type,
            moment,
            path=path,
            line_number=line.number,
            offset=line.offset,
            raw_sha256=line.invalid_utf8_sha256,
        )


def detect_stream(detector: Detector, records: Iterable[LogRecord]) -> Iterator[Finding]:
    """Yield the findings of a record stream, batch by batch, in line order."""
    for batch in in_groups(records, BATCH_LINES):
        yield from detector.detect(batch)


def detect_file(
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
    native: bool = True,
) -> Iterator[Finding]:
    """Yield the findings of a stream in line order, as `iter_lines` and `detect_stream` would.

    `totals`, when given, is updated as lines are read. A stream that starts in the middle of
    a file, at a line start, passes how many lines and bytes come before it there.
    `native=False` confirms the candidate lines with RE2 in Python, not the C++ Confirmer.
    """
    moment = now or datetime.now(UTC)
    parts = walk_file(
        detector, stream, source_type, path, max_line_bytes, moment,
        totals=totals, lines_before=lines_before, offset_before=offset_before,
    )  # fmt: skip
    for part in parts:
        if isinstance(part, RawCandidates):
            yield from _raw_findings(detector, part, path, moment, native=native)
        else:
            yield part


class RawCandidates:
    """A block of syslog lines that are their own views, with the lines the prefilter names.

    `candidates` maps the offset of a candidate line's newline in `block`, in line order, to
    the mask of the syslog rules to confirm on it (see `Detector.prefilter_lines`). The scan
    runs at the first use of `candidates`, so a caller with its own prefilter skips it.
    `number_base` and `offset_base` are the line count and byte offset of the block's start in
    the file.
    """

    __slots__ = ("_candidates", "_detector", "block", "number_base", "offset_base", "source_type")

    def __init__(
        self,
        detector: Detector,
        block: bytes,
        source_type: str,
        number_base: int,
        offset_base: int,
    ) -> None:
        self._detector = detector
        self._candidates: dict[int, int] | None = None
        self.block = block
        self.source_type = source_type
        self.number_base = number_base
        self.offset_base = offset_base

    @property
    def candidates(self) -> dict[int, int]:
        """The candidate lines' newline offsets mapped to their rule masks, in line order."""
        if self._candidates is None:
            self._candidates = self._detector.prefilter_lines("syslog", self.block)
        return self._candidates

    def lines(self) -> Iterator[tuple[int, int, str, int]]:
        """Yield (line number, byte offset, text, rule mask) of each candidate, in line order."""
        block = self.block
        counted_to = 0
        number = self.number_base
        for newline, rule_mask in self.candidates.items():
            start = block.rfind(b"\n", 0, newline) + 1
            number += count_newlines(block, counted_to, start)
            counted_to = start
            text = block[start:newline].decode("utf-8")
            yield number + 1, self.offset_base + start, text, rule_mask


def _raw_findings(
    detector: Detector, part: RawCandidates, path: str, moment: datetime, *, native: bool = True
) -> Iterator[Finding]:
    """Yield the findings of a raw block's candidate lines; `native=False` keeps RE2 in Python."""
    confirmer = native_confirmer(detector) if native else None
    for number, offset, text, rule_mask in part.lines():
        record = parse_line(
            text, part.source_type, moment, path=path, line_number=number, offset=offset
        )
        if record.view is not text and record.view != text:  # pragma: no cover
            yield from detector.detect([record])  # `_is_raw_view_block` rules this out
            continue
        found = None
        if confirmer is not None:
            found = confirmer.confirm(record, text.encode(), rule_mask)
        if found is None:
            found = detector.confirm(record, detector.rule_ids_of("syslog", rule_mask))
        yield from found


def walk_file(
    detector: Detector,
    stream: BinaryIO,
    source_type: str,
    path: str,
    max_line_bytes: int,
    moment: datetime,
    *,
    totals: StreamTotals | None = None,
    lines_before: int = 0,
    offset_before: int = 0,
) -> Iterator[Finding | RawCandidates]:
    """Yield the findings of a stream in line order, leaving raw syslog blocks unconfirmed.

    A block that takes the raw prefilter path comes out as `RawCandidates`, so the caller
    decides what to build from its candidate lines. Every other line comes out as findings.
    """
    counts = totals if totals is not None else StreamTotals()
    number = lines_before
    offset = offset_before
    if source_type not in ("auto", "syslog", "access_log"):
        yield from _detect_parsed(
            detector, stream, source_type, path, max_line_bytes, moment, number, offset, counts
        )
        return
    carry = b""
    while True:
        data = stream.read(READ_BYTES)
        if not data:
            break
        buffer = carry + data if carry else data
        cut = buffer.rfind(b"\n") + 1
        if cut == 0 and len(buffer) > max_line_bytes:
            # A line longer than the cap with no end in sight: the per-line reader cuts it and
            # skips the rest of it, then the blocks go on after its newline.
            line = _ToLineEnd(buffer, stream)
            lines_before_it = counts.lines
            yield from _detect_parsed(
                detector, line, source_type, path, max_line_bytes, moment, number, offset, counts
            )
            number += counts.lines - lines_before_it
            offset += line.consumed
            carry = line.rest
            continue
        block, carry = buffer[:cut], buffer[cut:]
        if block:
            lines_in_block = count_newlines(block)
            yield from _detect_block(
                detector, block, source_type, path, max_line_bytes, moment, number, offset, counts,
                lines_in_block,
            )  # fmt: skip
            number += lines_in_block
            offset += len(block)
    if carry:
        tail = io.BytesIO(carry)
        yield from _detect_parsed(
            detector, tail, source_type, path, max_line_bytes, moment, number, offset, counts
        )


class _ToLineEnd:
    """A read-only stream of `prefix`, then of `stream` up to and including its next newline.

    The bytes read past that newline are kept in `rest`, and `consumed` counts the bytes
    handed out. A line of any length is read in pieces of at most `READ_BYTES`.
    """

    def __init__(self, prefix: bytes, stream: BinaryIO) -> None:
        self._prefix = prefix
        self._stream = stream
        self._ended = False
        self.rest = b""
        self.consumed = 0

    def read(self, size: int = -1) -> bytes:
        if self._ended:
            return b""
        if self._prefix:
            data, self._prefix = self._prefix, b""
        else:
            data = self._stream.read(size if 0 < size <= READ_BYTES else READ_BYTES)
        newline = data.find(b"\n")
        if newline != -1:
            data, self.rest = data[: newline + 1], data[newline + 1 :]
            self._ended = True
        elif not data:
            self._ended = True
        self.consumed += len(data)
        return data


def _detect_parsed(
    detector: Detector,
    stream: BinaryIO | _ToLineEnd,
    source_type: str,
    path: str,
    max_line_bytes: int,
    moment: datetime,
    number_base: int,
    offset_base: int,
    counts: StreamTotals,
) -> Iterator[Finding]:
    """Parse every line of `stream` and detect in batches, numbering on from the bases."""
    lines = iter_lines(stream, max_line_bytes)  # type: ignore[arg-type]

    def shifted() -> Iterator[RawLine]:
        for line in lines:
            counts.lines += 1
            counts.parsed_lines += 1
            if line.truncated_bytes:
                counts.truncated_lines += 1
                if counts.first_truncated_line is None:
                    counts.first_truncated_line = line.number + number_base
            if number_base or offset_base:
                line = RawLine(
                    line.text,
                    line.number + number_base,
                    line.offset + offset_base,
                    line.size,
                    line.invalid_utf8_sha256,
                    line.truncated_bytes,
                )
            yield line

    yield from detect_stream(detector, records_from(shifted(), source_type, path, moment))


def _is_raw_view_block(block: bytes, source_type: str, max_line_bytes: int) -> bool:
    """Return whether every line of `block` is its own view and reads the same as `iter_lines`.

    That holds when the block is valid UTF-8 without CR, no line is longer than the cap (or
    than the detector's view limit), and
    every line parses as syslog but not as RFC 5424 (whose view is rebuilt from its fields).
    With `auto`, every line must also start with a month initial, so the guess is syslog.
    """
    if not block.isascii():
        try:
            block.decode("utf-8")
        except UnicodeDecodeError:
            return False
    # A CR is stripped from a line end by `iter_lines`, so such a line is not its own view.
    if b"\r" in block:
        return False
    if _NOT_RAW_VIEW_FIRST_LINE[source_type].search(block, 0, 2) is not None:
        return False
    if _NOT_RAW_VIEW[source_type].search(block) is not None:
        return False
    return lines_within(block, min(max_line_bytes, MAX_VIEW_CHARS))


def _detect_block(
    detector: Detector,
    block: bytes,
    source_type: str,
    path: str,
    max_line_bytes: int,
    moment: datetime,
    number_base: int,
    offset_base: int,
    counts: StreamTotals,
    lines_in_block: int,
) -> Iterator[Finding | RawCandidates]:
    """Detect in one block of complete lines: raw prefilter when it is sound, else parse all.

    `lines_in_block` is the number of newlines in `block`.
    """
    if source_type != "syslog":
        access = _detect_access_block(
            detector, block, source_type, path, max_line_bytes, moment, number_base, offset_base
        )
        if access is not None:
            counts.lines += lines_in_block
            counts.fast_lines += lines_in_block
            yield from access
            return
        if source_type == "access_log":
            yield from _detect_parsed(
                detector, io.BytesIO(block), source_type, path, max_line_bytes, moment,
                number_base, offset_base, counts,
            )  # fmt: skip
            return
    if not detector.has_prefilter("syslog") or not _is_raw_view_block(
        block, source_type, max_line_bytes
    ):
        yield from _detect_parsed(
            detector, io.BytesIO(block), source_type, path, max_line_bytes, moment,
            number_base, offset_base, counts,
        )  # fmt: skip
        return
    counts.lines += lines_in_block
    counts.fast_lines += lines_in_block
    yield RawCandidates(detector, block, source_type, number_base, offset_base)


def detect_lines_block(
    detector: Detector,
    block: bytes,
    source_type: str,
    path: str,
    max_line_bytes: int,
    moment: datetime,
    *,
    lines_before: int,
    offset_before: int,
    totals: StreamTotals | None = None,
) -> list[Finding]:
    """Return the findings of one block of complete lines, in line order, as `detect_file` would.

    The block must end with a newline. The daemon passes each block it reads from a followed
    file, with the number of lines and bytes before the block in that file. Like `detect_file`,
    this parses only the lines the prefilter names when the block allows it.
    """
    return list(
        detect_file(
            detector,
            io.BytesIO(block),
            source_type,
            path,
            max_line_bytes,
            now=moment,
            totals=totals,
            lines_before=lines_before,
            offset_before=offset_before,
        )
    )


def combined_access_view(line: str) -> str | None:
    """Return the view `parse_line` builds for a combined-format line of a simple shape, or None.

    The line must be printable ASCII without a backslash (so no field holds an escaped quote)
    and have exactly the shape `client ident user [time] "request" status size "referer"
    "agent"`, whose fields `str.split` then finds as the RE2 parse would. The view of a plain
    line, one without text that a normalisation step could change (`%`, `&`, `/*`, two spaces,
    or `+` in the target, which a query decodes to a space), is built from the fields directly:
    every step but lower-casing and stripping is a no-op there. Other lines get the view from
    `access_view`, memoised, because the same request, referer and agent recur on many lines.
    The caller checks that the line is ASCII.
    """
    if "\\" in line or not line.isprintable():
        return None
    parts = line.split('"')
    if len(parts) != 7 or parts[4] != " " or parts[6] != "":
        return None
    head = parts[0].split(" ", 3)
    if len(head) != 4 or not (head[0] and head[1] and head[2]):
        return None
    stamp = head[3]
    if len(stamp) < 4 or stamp[0] != "[" or stamp[-2:] != "] " or "]" in stamp[1:-2]:
        return None
    numbers = parts[2][1:-1].split(" ")
    if parts[2][:1] != " " or parts[2][-1:] != " " or len(numbers) != 2:
        return None
    status, size = numbers
    if not (status == "-" or (len(status) == 3 and status.isdigit())):
        return None
    if not (size == "-" or size.isdigit()):
        return None
    return _request_view(parts[1], parts[3], parts[5])


@lru_cache(maxsize=4096)
def _request_view(request: str, referer: str, agent: str) -> str:
    """Return the view of a combined-format line of a simple shape from its three quoted fields.

    The view depends on nothing else, and the same fields recur on many lines. The fields
    alone decide whether a normalisation step could change the view: without `%`, `&`, `/*`,
    two spaces or a `+` in the target, the plain view built here is the view `access_view`
    builds from the same fields.
    """
    method, _, rest = request.partition(" ")
    target, _, protocol = rest.rpartition(" ")
    if not protocol.startswith("HTTP/"):
        target = rest
    fields = (request, referer, agent)
    if any("%" in field or "&" in field or "/*" in field or "  " in field for field in fields):
        return _memoised_access_view(method, target, referer, agent)
    if "+" in target:
        return _memoised_access_view(method, target, referer, agent)
    agent_view = "" if agent == "-" else agent.lower().strip()
    referer_view = "" if referer == "-" else referer.lower().strip()
    return f"{method.lower()} {target.lower().strip()} ua:{agent_view} ref:{referer_view}"


_memoised_access_view = lru_cache(maxsize=4096)(access_view)


def _detect_access_block(
    detector: Detector,
    block: bytes,
    source_type: str,
    path: str,
    max_line_bytes: int,
    moment: datetime,
    number_base: int,
    offset_base: int,
) -> list[Finding] | None:
    """Detect in a block of access-log lines, parsing in full only the lines that need it.

    Lines of the simple combined shape get their view from `combined_access_view`; the rest
    are parsed by `parse_line`. Each distinct view is prefiltered once (see
    `Detector.prefilter_repeated_views`), and only candidates become records. Return None
    when the block does not suit this path: not ASCII, CR or over-long lines, no prefilter,
    or (with `auto`) a line that is not guessed to be an access-log line.
    """
    if not detector.has_prefilter("access_log") or not block.isascii() or b"\r" in block:
        return None
    if not lines_within(block, min(max_line_bytes, MAX_VIEW_CHARS)):
        return None
    if source_type == "auto" and _NOT_ACCESS_LOG.search(block) is not None:
        return None
    lines = block.decode("ascii").split("\n")
    lines.pop()  # the block ends with a newline
    kind = "access_log"
    # Line i starts at `offset_base + text_before[i] + i`, after i lines and their newlines.
    text_before = list(accumulate(map(len, lines), initial=0))
    views: list[str] = []
    records: dict[int, LogRecord] = {}
    if _SIMPLE_ACCESS_LINES.fullmatch(block) is not None:
        # Every line has the simple shape, so `combined_access_view` would only split it.
        for line in lines:
            parts = line.split('"')
            views.append(_request_view(parts[1], parts[3], parts[5]))
    else:
        for index, view in enumerate([combined_access_view(line) for line in lines]):
            if view is None:
                record = parse_line(
                    lines[index], kind, moment, path=path, line_number=number_base + index + 1,
                    offset=offset_base + text_before[index] + index,
                )  # fmt: skip
                records[index] = record
                view = record.view
            views.append(view)
    findings: list[Finding] = []
    candidates = detector.prefilter_repeated_views(kind, views)
    for index in sorted(candidates):
        record = records.get(index) or parse_line(
            lines[index], kind, moment, path=path, line_number=number_base + index + 1,
            offset=offset_base + text_before[index] + index,
        )  # fmt: skip
        if record.view == views[index]:
            findings.extend(detector.confirm(record, candidates[index]))
        else:  # pragma: no cover - `combined_access_view` matches `parse_line`
            findings.extend(detector.detect([record]))
    return findings
