"""Rendered rows from `detect --jobs` workers to their parent, which attributes and prints them.

A worker renders its range's rows (see `rows.py`) and writes them with the three fields
attribution reads. The parent attributes all ranges in order, as one pass would, and fills in
the lines that gain an address, so its share of the work per row is small.

Records travel as length-prefixed marshal data. marshal is fast but trusts its input, so it
only carries data from a forked worker to its parent through a private temporary file.
"""

from __future__ import annotations

import marshal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

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
    """Rendered lines of consecutive rows, with the process key, time and address of each."""

    lines: list[str]
    processes: list[ProcessKey | None]
    times: list[LogTime | None]
    addresses: list[str | None]


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


def dump_rendered(rendered: RenderedRows, sink: BinaryIO) -> None:
    """Append rendered rows to `sink` as one record for `load_rendered`."""
    record = (rendered.lines, rendered.processes, rendered.times, rendered.addresses)
    data = marshal.dumps(record)
    sink.write(len(data).to_bytes(_LENGTH_BYTES, "little"))
    sink.write(data)


def load_rendered(source: BinaryIO) -> Iterator[RenderedRows]:
    """Yield the records `dump_rendered` wrote to `source`, in order, until its end."""
    while True:
        prefix = source.read(_LENGTH_BYTES)
        if not prefix:
            return
        data = source.read(int.from_bytes(prefix, "little"))
        lines, processes, microseconds, addresses = marshal.loads(data)  # noqa: S302 - own worker
        yield RenderedRows(lines, processes, microseconds, addresses)


def attribute_rendered(
    records: Iterable[RenderedRows], context: ProcessContext, group: int = ATTRIBUTION_GROUP
) -> Iterator[list[str]]:
    """Attribute rendered rows in groups of `group`, as `attribute_rows` does; yield the lines."""
    pending = RenderedRows([], [], [], [])
    for record in records:
        pending.lines += record.lines
        pending.processes += record.processes
        pending.times += record.times
        pending.addresses += record.addresses
        while len(pending.lines) >= group:
            yield _attribute_lines(_take(pending, group), context)
    if pending.lines:
        yield _attribute_lines(pending, context)


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
