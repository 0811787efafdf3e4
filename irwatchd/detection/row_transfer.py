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

from irwatchd.detection.process_context import ATTRIBUTION_GROUP, ProcessContext, ProcessKey
from irwatchd.detection.rows import DetectRow, RowRenderer, attribute_group

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_LENGTH_BYTES = 8
_MAX_CACHED_TIMES = 4096


@dataclass(slots=True)
class RenderedRows:
    """Rendered lines of consecutive rows, with the process key, time and address of each."""

    lines: list[str]
    processes: list[ProcessKey | None]
    times: list[datetime | None]
    addresses: list[str | None]


def dump_rendered(rows: list[DetectRow], renderer: RowRenderer, sink: BinaryIO) -> None:
    """Render rows and append them to `sink` as one record for `load_rendered`.

    Times travel as microseconds since the epoch, because attribution and printing use only
    the instant, not the time zone.
    """
    microseconds = [
        None if row.time is None else (row.time - _EPOCH) // _MICROSECOND for row in rows
    ]
    record = (
        renderer.render_lines(rows),
        [row.process for row in rows],
        microseconds,
        [row.source_ip for row in rows],
    )
    data = marshal.dumps(record)
    sink.write(len(data).to_bytes(_LENGTH_BYTES, "little"))
    sink.write(data)


def load_rendered(source: BinaryIO) -> Iterator[RenderedRows]:
    """Yield the records `dump_rendered` wrote to `source`, in order, until its end."""
    times: dict[int, datetime] = {}
    while True:
        prefix = source.read(_LENGTH_BYTES)
        if not prefix:
            return
        data = source.read(int.from_bytes(prefix, "little"))
        lines, processes, microseconds, addresses = marshal.loads(data)  # noqa: S302 - own worker
        moments = [
            None if value is None else times.get(value) or _new_time(times, value)
            for value in microseconds
        ]
        yield RenderedRows(lines, processes, moments, addresses)


def _new_time(times: dict[int, datetime], microseconds: int) -> datetime:
    """Return the time `microseconds` after the epoch, and keep it in `times` for reuse."""
    if len(times) >= _MAX_CACHED_TIMES:
        times.clear()
    moment = times[microseconds] = _EPOCH + timedelta(microseconds=microseconds)
    return moment


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
