"""Rendered rows from `detect --jobs` workers to their parent, which attributes and prints them.

A worker renders its range's rows (see `rows.py`) and writes their text, then the three fields
attribution reads, then a summary (`write_range_output`). The parent attributes all ranges in
order, as one pass would, and fills in the lines that gain an address (`print_ranges`).

A range where every row has an address needs no attribution, so the parent copies its text as
it is. What later ranges recall from it is only its last `max_processes` processes, which the
parent reads from the end of its fields, and only when a later range has a row to attribute.

Records travel as length-prefixed marshal data. marshal is fast but trusts its input, so it
only carries data from a forked worker to its parent through a private temporary file.
"""

from __future__ import annotations

import errno
import marshal
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from irwatchd.detection.process_context import (
    ATTRIBUTION_GROUP,
    LogTime,
    ProcessContext,
    ProcessKey,
)
from irwatchd.detection.rows import SOURCE_IP, DetectRow, RowRenderer, attribute_group

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_LENGTH_BYTES = 8


@dataclass(slots=True)
class RenderedRows:
    """Rendered lines of consecutive rows, with the process key, time and address of each.

    Rows read back from a worker arrive as one `joined` text, and `lines` stays empty until
    `line_list` splits it, which only a group with a line to attribute needs.
    """

    lines: list[str]
    processes: list[ProcessKey | None]
    times: list[LogTime | None]
    addresses: list[str | None]
    joined: str | None = None

    def line_list(self) -> list[str]:
        """Return the rendered lines, each ending in a newline."""
        if self.joined is not None:
            # A rendered line is JSON with every control character escaped, so its only
            # newline is the one that ends it.
            self.lines = [line + "\n" for line in self.joined.split("\n")[:-1]]
            self.joined = None
        return self.lines

    def text(self) -> str:
        """Return the rendered lines as one text."""
        return "".join(self.lines) if self.joined is None else self.joined


def render_rows(rows: list[DetectRow], renderer: RowRenderer) -> RenderedRows:
    """Render rows, with times as microseconds since the epoch.

    The parent attributes with those times as they are, because attribution uses only the
    instant and the lines are rendered already.
    """
    # Rows of one log second share a time, so each distinct time is converted once.
    distinct = {row[6] for row in rows if row[6] is not None}
    since_epoch = {moment: microseconds_of(moment) for moment in distinct}
    return RenderedRows(
        renderer.render_lines(rows),
        [row[7] for row in rows],
        [None if row[6] is None else since_epoch[row[6]] for row in rows],
        [row[SOURCE_IP] for row in rows],
    )


def microseconds_of(moment: datetime) -> int:
    """Return a log time as `render_rows` passes it on: whole microseconds since the epoch."""
    return (moment - _EPOCH) // _MICROSECOND


def write_range_output(records: Iterable[RenderedRows], sink: BinaryIO) -> None:
    """Write a range's rows for `print_ranges`: text, then fields, then a summary and trailer.

    The fields of each record follow all the text, so the parent can copy the text alone. The
    summary lists where each record's fields start, so the parent can read them from the end.
    """
    rows = 0
    lacks_address = False
    starts = []
    with tempfile.TemporaryFile() as fields:
        for record in records:
            text = record.text().encode()
            sink.write(text)
            starts.append(fields.tell())
            _dump((len(text), record.processes, record.times, record.addresses), fields)
            rows += len(record.addresses)
            lacks_address = lacks_address or None in record.addresses
        text_bytes = sink.tell()
        fields.seek(0)
        shutil.copyfileobj(fields, sink)
    summary = marshal.dumps((text_bytes, rows, lacks_address, [text_bytes + at for at in starts]))
    sink.write(summary)
    sink.write(len(summary).to_bytes(_LENGTH_BYTES, "little"))


def print_ranges(sinks: list[BinaryIO], out: BinaryIO, group: int = ATTRIBUTION_GROUP) -> None:
    """Print the rows of each range's `write_range_output`, attributed as one pass would.

    Ranges before the first one with a row that lacks an address are copied. From that one on,
    every record goes through `attribute_rendered`, because a group of rows that lacks an
    address may reach into the next range.
    """
    context = ProcessContext()
    position = 0
    summaries = [_summary(sink) for sink in sinks]
    first_slow = next((index for index, item in enumerate(summaries) if item[2]), len(sinks))
    for sink, (text_bytes, rows, _, _) in zip(sinks[:first_slow], summaries, strict=False):
        sink.seek(0)
        _copy(sink, out, text_bytes)
        position += rows
    if first_slow == len(sinks):
        return
    # Rows of the later ranges may take an address from the processes of the copied ones.
    state = _last_processes(sinks[:first_slow], summaries, context.max_processes)
    if state:
        keys, addresses, moments = zip(*state, strict=True)
        context.remember_columns(keys, addresses, moments)
    records = (
        record
        for sink, summary in zip(sinks[first_slow:], summaries[first_slow:], strict=True)
        for record in _records_with_text(sink, summary[0])
    )
    for text in attribute_rendered(records, context, group, position=position):
        out.write(text.encode())


def _summary(sink: BinaryIO) -> tuple[int, int, bool, list[int]]:
    """Return (text bytes, rows, lacks an address, record starts) from a range's output."""
    sink.seek(-_LENGTH_BYTES, 2)
    size = int.from_bytes(sink.read(_LENGTH_BYTES), "little")
    sink.seek(-_LENGTH_BYTES - size, 2)
    summary: tuple[int, int, bool, list[int]] = marshal.loads(sink.read(size))  # noqa: S302 - own worker
    return summary


def _last_processes(
    sinks: list[BinaryIO], summaries: list[tuple[int, int, bool, list[int]]], limit: int
) -> list[tuple[ProcessKey, str, LogTime | None]]:
    """Return the last (key, address, time) of the last `limit` processes of these ranges.

    A least-recently-used store that remembered every row in order contains exactly these, so
    the records are read from the last one back, and only until `limit` keys are found.
    """
    found: dict[ProcessKey, tuple[str, LogTime | None]] = {}
    for sink, summary in zip(reversed(sinks), reversed(summaries[: len(sinks)]), strict=True):
        for start in reversed(summary[3]):
            sink.seek(start)
            _, processes, times, addresses = _load(sink)
            for key, moment, address in zip(
                reversed(processes), reversed(times), reversed(addresses), strict=True
            ):
                if key is not None and key not in found:
                    found[key] = (address, moment)
                    if len(found) == limit:
                        return [(key, *value) for key, value in reversed(found.items())]
    return [(key, *value) for key, value in reversed(found.items())]


def _records_with_text(sink: BinaryIO, text_bytes: int) -> Iterator[RenderedRows]:
    """Yield the records of a range: fields read on from `text_bytes`, text from the start."""
    sink.seek(text_bytes)
    offset = 0
    while offset < text_bytes:
        record = _load(sink)
        if record is None:
            raise OSError(f"a detect worker's output lacks the fields of its text after {offset}")
        length, processes, microseconds, addresses = record
        joined = os.pread(sink.fileno(), length, offset).decode()
        offset += length
        yield RenderedRows([], processes, microseconds, addresses, joined)


def _copy(source: BinaryIO, out: BinaryIO, size: int) -> None:
    """Copy the next `size` bytes of `source` to `out`, in the kernel where it can."""
    size -= _send(source, out, size)
    while size > 0:
        chunk = source.read(min(size, 1 << 20))
        if not chunk:
            raise OSError(f"a detect worker's output ended {size} bytes early")
        out.write(chunk)
        size -= len(chunk)


def _dump(record: Any, sink: BinaryIO) -> None:
    data = marshal.dumps(record)
    sink.write(len(data).to_bytes(_LENGTH_BYTES, "little"))
    sink.write(data)


def _load(source: BinaryIO) -> Any:
    """Return the next record `_dump` wrote to `source`, or None at its end."""
    prefix = source.read(_LENGTH_BYTES)
    if not prefix:
        return None
    return marshal.loads(source.read(int.from_bytes(prefix, "little")))  # noqa: S302 - own worker


def attribute_rendered(
    records: Iterable[RenderedRows],
    context: ProcessContext,
    group: int = ATTRIBUTION_GROUP,
    *,
    position: int = 0,
) -> Iterator[str]:
    """Attribute rendered rows in groups of `group`, as `attribute_rows` does; yield the text.

    Groups start at every `group`-th row of the whole stream, of which `position` rows came
    before these records. A record with every address
    present that starts with no rows pending goes through whole: its rows are only remembered,
    and none of them looks ahead, because that is only for rows without an address.
    """
    pending = RenderedRows([], [], [], [])
    for record in records:
        if not pending.addresses and None not in record.addresses:
            context.remember_columns(record.processes, record.addresses, record.times)  # type: ignore[arg-type]
            position += len(record.addresses)
            yield record.text()
            continue
        pending.lines += record.line_list()
        pending.processes += record.processes
        pending.times += record.times
        pending.addresses += record.addresses
        while len(pending.addresses) >= (room := group - position % group):
            position += room
            yield "".join(_attribute_lines(_take(pending, room), context))
    if pending.addresses:
        yield "".join(_attribute_lines(pending, context))


def _take(pending: RenderedRows, count: int) -> RenderedRows:
    """Remove the first `count` rows from `pending` and return them."""
    head = RenderedRows(
        pending.lines[:count],
        pending.processes[:count],
        pending.times[:count],
        pending.addresses[:count],
    )
    del pending.lines[:count], pending.processes[:count]
    del pending.times[:count], pending.addresses[:count]
    return head


def _attribute_lines(rows: RenderedRows, context: ProcessContext) -> list[str]:
    attributed = attribute_group(rows.processes, rows.times, rows.addresses, context)
    lines = rows.lines
    if attributed is rows.addresses:
        return lines
    for index, (before, after) in enumerate(zip(rows.addresses, attributed, strict=True)):
        if before is None and after is not None:
            lines[index] = RowRenderer.with_source_ip(lines[index], after)
    return lines


def _send(source: BinaryIO, out: BinaryIO, size: int) -> int:
    """Copy up to `size` bytes from `source` to `out` with `sendfile`; return how many.

    A large run prints tens of MB of text, and `sendfile` copies it without passing it through
    this process. Return 0, with both streams unmoved, for an output without a descriptor or
    opened to append, which Linux's `sendfile` rejects with EINVAL.
    """
    try:
        target = out.fileno()
        origin = source.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return 0
    out.flush()
    position = source.tell()
    sent = 0
    while sent < size:
        try:
            count = os.sendfile(target, origin, position + sent, size - sent)
        except OSError as error:
            if sent == 0 and error.errno in (errno.EINVAL, errno.ENOSYS):
                return 0
            raise
        if count == 0:
            break
        sent += count
    source.seek(position + sent)
    return sent
