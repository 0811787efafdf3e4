"""Run the detector over a whole stream of lines in batches, as `detect`, `scan` and `eval` do."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from irwatchd.detection.engine import Detector
from irwatchd.detection.finding import Finding
from irwatchd.parsing.dispatch import parse_line
from irwatchd.parsing.record import LogRecord
from irwatchd.sources.lines import RawLine

BATCH_LINES = 8192
"""Lines per detector call; large enough that the prefilter scan dominates the Python work."""


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
    batch: list[LogRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) >= BATCH_LINES:
            yield from detector.detect(batch)
            batch = []
    if batch:
        yield from detector.detect(batch)
