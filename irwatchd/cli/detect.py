"""`irwatchd detect`: print one JSON object per finding in a file, with no correlation."""

from __future__ import annotations

import argparse
import gc
import json
import sys
from typing import BinaryIO

from irwatchd.config import default_config_path, load_config
from irwatchd.detection.batch import detect_file
from irwatchd.detection.loader import build_detector
from irwatchd.errors import EX_DATAERR, EX_OK


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
    parser.add_argument("file", help="log file to read, or - for standard input")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Detect findings in one file and print them; exit 65 when the input cannot be read."""
    loaded = load_config(args.config_path if args.config else default_config_path())
    detector = build_detector(loaded)
    # Findings and records hold no reference cycles, so reference counting frees them. The
    # cycle collector would otherwise walk every object after each 700 allocations; freeze
    # what is loaded and collect young objects less often (about 10% of a large run).
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    stream: BinaryIO
    try:
        stream = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as error:
        print(
            f"irwatchd detect: cannot read {args.file!r}: {error.strerror}; "
            "pass a readable log file or - for standard input",
            file=sys.stderr,
        )
        return EX_DATAERR
    out = sys.stdout
    try:
        with stream:
            findings = detect_file(
                detector, stream, args.source_type, args.file, loaded.config.max_line_bytes
            )
            for finding in findings:
                out.write(json.dumps(finding.to_detect_json()) + "\n")
    except IsADirectoryError:
        print(f"irwatchd detect: {args.file!r} is a directory; pass a log file", file=sys.stderr)
        return EX_DATAERR
    except OSError as error:
        print(f"irwatchd detect: reading {args.file!r} failed: {error}", file=sys.stderr)
        return EX_DATAERR
    out.flush()
    return EX_OK
