"""Rendered rows of `irwatchd detect`, from the C++ row builder where it is built.

On a log where a quarter of the lines are findings, Python work per finding bounds `detect`:
the Hyperscan callback, RE2 through its binding, the header split and the JSON line cost about
8 µs each. `_rawrows` (a C++ extension over the Debian `libhyperscan` and `libre2` libraries,
built by `setup.py` when they are installed) does those steps for a whole raw syslog block. It
calls `RawRowBuilder` for what is rare or subtle: the time of each new minute, whether each
new `host tag[` prefix splits, the cleaned form of each new address, and every line whose
header is not of the usual shape. So both paths print the same bytes; `tests/test_native_rows.py`
compares them. Without the extension, `detect_rendered` builds the same rows in Python.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring_ascii
from types import ModuleType
from typing import BinaryIO

from irwatchd.detection.batch import RawCandidates, StreamTotals, walk_file
from irwatchd.detection.engine import Detector, memoised_clean_source
from irwatchd.detection.hscache import load_or_build_bytes
from irwatchd.detection.native_confirm import rules_spec
from irwatchd.detection.process_context import ATTRIBUTION_GROUP, ProcessKey
from irwatchd.detection.row_transfer import RenderedRows, microseconds_of, render_rows
from irwatchd.detection.rows import (
    DetectRow,
    RawRowBuilder,
    RowRenderer,
    detect_rows,
    row_from_finding,
)
from irwatchd.logger import get_logger
from irwatchd.parsing.syslog import NOT_A_STAMP, PER_STAMP
from irwatchd.parsing.timestamps import format_rfc3339

_rawrows: ModuleType | None
try:
    from irwatchd.detection import _rawrows  # type: ignore[attr-defined, no-redef]
except ImportError:  # built only where Hyperscan and RE2 headers were installed
    _rawrows = None

log = get_logger(__name__)

_LAST_SECOND = timedelta(seconds=59)


def native_available() -> bool:
    """Return whether the C++ row builder was built and imports."""
    return _rawrows is not None


class NativeRows:
    """The C++ row builder for the syslog rules of one detector, with its Python callbacks."""

    def __init__(self, detector: Detector, moment: datetime) -> None:
        if _rawrows is None:
            raise RuntimeError(
                "the _rawrows extension is not built; install g++ python3-dev "
                "libhyperscan-dev libre2-dev and run pip install -e . again"
            )
        self._builder = RawRowBuilder(detector, moment)
        self._renderer = RowRenderer()
        expressions, rule_of_pattern, flags = detector.prefilter_patterns("syslog")
        module = _rawrows
        version = f"native {module.hyperscan_version()}"
        all_flags = [flags] * len(expressions)

        def compile_database() -> bytes:
            return bytes(module.compile_database(expressions, flags))

        database = load_or_build_bytes(version, expressions, all_flags, compile_database)
        rules = rules_spec(detector)
        callbacks = (
            self._minute_of,
            self._time_of,
            self._source_of,
            memoised_clean_source,
            encode_basestring_ascii,
            self._fallback,
        )
        try:
            self._engine = module.Engine(database, rule_of_pattern, rules, *callbacks)
        except module.DatabaseError as error:
            # A damaged cache file: compile the database again and replace the file.
            log.warning("hyperscan_cache_load_failed", error=str(error),
                        hint="the database is compiled again and the file replaced")  # fmt: skip
            database = load_or_build_bytes(
                version, expressions, all_flags, compile_database, rebuild=True
            )
            self._engine = module.Engine(database, rule_of_pattern, rules, *callbacks)

    def add_block(self, part: RawCandidates, rendered: RenderedRows) -> None:
        """Append the rendered rows of one raw syslog block to `rendered`, in line order."""
        self._engine.scan(
            part.block,
            part.number_base,
            rendered.lines,
            rendered.processes,
            rendered.times,
            rendered.addresses,
        )

    def _minute_of(self, prefix: str) -> tuple[str, int] | tuple[str] | tuple[()] | None:
        """Tell the C++ side how to build the times of a minute's stamps.

        Return None when no stamp starts with `prefix`, and ("null",) when none of them has
        a time. Return (UTC text up to the seconds, microseconds at second 0) when a stamp's
        time is that plus its seconds. Return () to have each stamp sent to `_time_of`: a
        minute where the year guess changes, or one whose UTC text does not simply add on.
        """
        kind, start = self._builder.stamp_minute(prefix)
        if kind == NOT_A_STAMP:
            return None
        if kind == PER_STAMP:
            return ()
        if start is None:
            return ("null",)
        first = format_rfc3339(start)
        last_time = start + _LAST_SECOND
        base = microseconds_of(start)
        if (
            first is None
            or start.microsecond
            or not first.endswith("00Z")
            or format_rfc3339(last_time) != first[:-3] + "59Z"
            or microseconds_of(last_time) != base + 59_000_000
        ):
            return ()
        return first[:-3], base

    def _time_of(self, stamp: str) -> tuple[str, int | None] | None:
        """Return the JSON time value and microseconds of a stamp prefix, or None for no stamp."""
        is_stamp, time = self._builder.stamp_time(stamp)
        if not is_stamp:
            return None
        stamp_text = format_rfc3339(time)
        if time is None or stamp_text is None:
            return "null", None
        return encode_basestring_ascii(stamp_text), microseconds_of(time)

    def _source_of(self, prefix: str) -> tuple[str, str] | None:
        return self._builder.source(prefix) or None

    def _fallback(
        self,
        data: bytes,
        rule_indexes: list[int],
        number: int,
        lines: list[str],
        processes: list[ProcessKey | None],
        times: list[int | None],
        addresses: list[str | None],
    ) -> None:
        """Append the rows of a line whose header the C++ split leaves to Python."""
        rule_mask = 0
        for index in rule_indexes:
            rule_mask |= 1 << index
        rows = self._builder.line_rows(data, rule_mask, number)
        if rows:
            rendered = render_rows(rows, self._renderer)
            lines += rendered.lines
            processes += rendered.processes
            times += rendered.times  # type: ignore[arg-type]
            addresses += rendered.addresses


def native_rows(detector: Detector, moment: datetime) -> NativeRows | None:
    """Return the C++ row builder for a detector, or None when it is not available here."""
    if _rawrows is None or not detector.has_prefilter("syslog"):
        return None
    try:
        return NativeRows(detector, moment)
    except ValueError as error:
        # The Debian Hyperscan or RE2 may reject what the pinned wheels accept.
        log.warning("native_rows_unavailable", error=str(error),
                    hint="detect builds the same rows in Python, more slowly")  # fmt: skip
        return None


def detect_rendered(
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
    engine: NativeRows | None = None,
) -> Iterator[RenderedRows]:
    """Yield the rendered rows of a stream in line order, as `detect_rows` and `render_rows`.

    `native=False` builds every row in Python, as when the extension is missing. `engine` is
    a `native_rows` result for the same detector and `now` to reuse, as for the ranges that
    one `detect --jobs` worker takes in turn.
    """
    moment = now or datetime.now(UTC)
    if engine is None and native:
        engine = native_rows(detector, moment)
    elif not native:
        engine = None
    renderer = RowRenderer()
    if engine is None:
        python_rows = detect_rows(
            detector, stream, source_type, path, max_line_bytes, now=moment,
            totals=totals, lines_before=lines_before, offset_before=offset_before,
        )  # fmt: skip
        for rows_of_group in python_rows:
            yield render_rows(rows_of_group, renderer)
        return
    pending = RenderedRows([], [], [], [])
    rows: list[DetectRow] = []
    parts = walk_file(
        detector, stream, source_type, path, max_line_bytes, moment,
        totals=totals, lines_before=lines_before, offset_before=offset_before,
    )  # fmt: skip
    for part in parts:
        if isinstance(part, RawCandidates):
            _extend(pending, rows, renderer)
            engine.add_block(part, pending)
        else:
            rows.append(row_from_finding(part))
        if len(rows) + len(pending.lines) >= ATTRIBUTION_GROUP:
            _extend(pending, rows, renderer)
            yield pending
            pending = RenderedRows([], [], [], [])
    _extend(pending, rows, renderer)
    if pending.lines:
        yield pending


def _extend(pending: RenderedRows, rows: list[DetectRow], renderer: RowRenderer) -> None:
    """Render `rows` onto the end of `pending` and empty `rows`."""
    if rows:
        rendered = render_rows(rows, renderer)
        pending.lines += rendered.lines
        pending.processes += rendered.processes
        pending.times += rendered.times
        pending.addresses += rendered.addresses
        rows.clear()
