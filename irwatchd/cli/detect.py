"""`irwatchd detect`: print one JSON object per finding in a file, with no correlation."""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import BinaryIO

from irwatchd.config_paths import default_config_path
from irwatchd.detection.batch import StreamTotals
from irwatchd.detection.engine import Detector
from irwatchd.detection.native_rows import NativeRows, detect_rendered, native_rows
from irwatchd.detection.parallel import FileRange, RangePlan, run_in_parallel, split_ranges
from irwatchd.detection.process_context import ProcessContext
from irwatchd.detection.row_transfer import (
    RenderedRows,
    attribute_rendered,
    print_ranges,
    write_range_output,
)
from irwatchd.detection.settings_cache import load_detect_settings
from irwatchd.errors import EX_DATAERR, EX_NOINPUT, EX_NOPERM, EX_OK, EX_SOFTWARE, EX_USAGE
from irwatchd.sources.discovery import is_binary, looks_binary


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `detect` subcommand."""
    parser = subparsers.add_parser(
        "detect", help="print the findings in one log file as JSON lines (no correlation)"
    )
    parser.add_argument("-c", "--config", help="config file (default: etc/irwatchd.yaml)")
    parser.add_argument(
        "--source-type",
        default="auto",
        choices=["auto", "syslog", "access_log", "error_log", "json"],
        help="how to parse the lines (default: guessed per line)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=default_jobs(),
        help="processes that read a regular file in parallel ranges of at least 8 MiB each "
        "(default: the CPUs this process may run on, here %(default)s); the output is the "
        "same bytes as with 1",
    )
    parser.add_argument("file", help="log file to read, or - for standard input")
    parser.set_defaults(handler=run)


def default_jobs() -> int:
    """Return how many CPUs this process may run on, as grep-like tools that use them all do."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run(args: argparse.Namespace) -> int:
    """Detect findings in one file and print them; exit 65 when the input cannot be read."""
    settings = load_detect_settings(args.config_path if args.config else default_config_path())
    detector = Detector(settings.rules)
    # Findings and records hold no reference cycles, so reference counting frees them. The
    # cycle collector would otherwise walk every object after each 700 allocations; freeze
    # what is loaded and collect young objects less often (about 10% of a large run).
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    if args.jobs < 1:
        print(f"irwatchd detect: --jobs {args.jobs} is invalid; pass 1 or more", file=sys.stderr)
        return EX_USAGE
    if args.file != "-" and os.path.isfile(args.file) and is_binary(args.file):
        print(
            f"irwatchd detect: {args.file!r} is binary or compressed, not a text log; "
            f"decompress it first, for example: zcat {args.file} | irwatchd detect -",
            file=sys.stderr,
        )
        return EX_DATAERR
    if args.jobs > 1 and args.file != "-" and os.path.isfile(args.file):
        try:
            plan = split_ranges(args.file, args.jobs)
        except OSError:
            plan = None  # the one-process path below reports the error
        if plan is not None and plan.workers > 1:
            return _detect_in_parallel(args, detector, plan, settings.max_line_bytes)
    # A pipe's buffered reader shows its first bytes without taking them.
    peek = getattr(sys.stdin.buffer, "peek", None) if args.file == "-" else None
    if peek is not None and looks_binary(peek(4096)[:4096]):
        print(
            "irwatchd detect: standard input is binary or compressed, not a text log; "
            "decompress it first, for example: zcat FILE | irwatchd detect -",
            file=sys.stderr,
        )
        return EX_DATAERR
    stream: BinaryIO
    try:
        stream = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as error:
        print(
            f"irwatchd detect: cannot read {args.file!r}: {error.strerror}; "
            "pass a readable log file or - for standard input",
            file=sys.stderr,
        )
        return EX_NOPERM if isinstance(error, PermissionError) else EX_NOINPUT
    totals = StreamTotals()
    try:
        with stream:
            rendered = detect_rendered(
                detector, stream, args.source_type, args.file, settings.max_line_bytes,
                totals=totals,
            )  # fmt: skip
            _print_rendered(rendered)
    except IsADirectoryError:
        print(f"irwatchd detect: {args.file!r} is a directory; pass a log file", file=sys.stderr)
        return EX_NOINPUT
    except OSError as error:
        if isinstance(error, BrokenPipeError):
            raise  # the output, not the input: `main` ends quietly, as after `| head`
        print(f"irwatchd detect: reading {args.file!r} failed: {error}", file=sys.stderr)
        return EX_DATAERR
    sys.stdout.flush()
    _report_truncated(args.file, totals, settings.max_line_bytes)
    return EX_OK


def _report_truncated(path: str, totals: StreamTotals, max_line_bytes: int) -> None:
    """Tell on standard error how many lines were cut at `max_line_bytes`, if any."""
    if totals.truncated_lines:
        print(
            f"irwatchd detect: {totals.truncated_lines} line(s) of {path!r} were longer than "
            f"max_line_bytes ({max_line_bytes}), the first at line {totals.first_truncated_line}; "
            f"only their first {max_line_bytes} bytes were read. Raise max_line_bytes in the "
            "config to read such lines whole.",
            file=sys.stderr,
        )


def _print_rendered(records: Iterable[RenderedRows]) -> None:
    """Attribute rendered rows by process and print them, as one pass over the file does."""
    for text in attribute_rendered(records, ProcessContext()):
        sys.stdout.write(text)


def _detect_in_parallel(
    args: argparse.Namespace, detector: Detector, plan: RangePlan, max_line_bytes: int
) -> int:
    """Detect in the plan's ranges in forked workers, then attribute and print here, in order.

    Attribution runs in this process over the rows of all ranges, so a line without an
    address gets the one its process showed in an earlier range, as in one pass.
    """
    now = datetime.now(UTC)
    # Each worker leaves its count of cut lines here, so the note names the whole file once.
    cut_lines = {start: tempfile.TemporaryFile() for start, _ in plan.spans}  # noqa: SIM115
    # A worker builds its C++ row builder at its first range and keeps it for the others.
    engines: list[NativeRows | None] = []

    def write_range(stream: BinaryIO, file_range: FileRange, sink: BinaryIO) -> None:
        if not engines:
            engines.append(native_rows(detector, now))
        totals = StreamTotals()
        records = detect_rendered(
            detector, stream, args.source_type, args.file, max_line_bytes, now=now,
            totals=totals, lines_before=file_range.lines_before, offset_before=file_range.start,
            native=engines[0] is not None, engine=engines[0],
        )  # fmt: skip
        write_range_output(records, sink)
        first = totals.first_truncated_line or 0
        os.write(cut_lines[file_range.start].fileno(), f"{totals.truncated_lines} {first}".encode())

    try:
        with run_in_parallel(args.file, plan, write_range) as sinks:
            if sinks is None:
                print(f"irwatchd detect: a worker failed on {args.file!r}; see the error above",
                      file=sys.stderr)  # fmt: skip
                return EX_SOFTWARE
            sys.stdout.flush()
            print_ranges(sinks, sys.stdout.buffer)
        sys.stdout.flush()
        _report_truncated(args.file, _summed_cut_lines(cut_lines.values()), max_line_bytes)
    except OSError as error:
        if isinstance(error, BrokenPipeError):
            raise  # the output, not the input: `main` ends quietly, as after `| head`
        print(f"irwatchd detect: reading {args.file!r} failed: {error}", file=sys.stderr)
        return EX_DATAERR
    finally:
        for handle in cut_lines.values():
            handle.close()
    return EX_OK


def _summed_cut_lines(handles: Iterable[BinaryIO]) -> StreamTotals:
    """Add up the cut-line counts the workers wrote, keeping the first line number of all."""
    totals = StreamTotals()
    for handle in handles:
        handle.seek(0)
        count, first = (int(field) for field in handle.read().split())
        totals.truncated_lines += count
        if count and (totals.first_truncated_line is None or first < totals.first_truncated_line):
            totals.first_truncated_line = first
    return totals
