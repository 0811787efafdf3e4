"""`irwatchd scan`: analyse old logs in one pass and write a timestamped incident report."""

from __future__ import annotations

import argparse
from pathlib import Path

from irwatchd.config import load_config
from irwatchd.config_paths import default_config_path
from irwatchd.detection.loader import build_detector
from irwatchd.errors import EX_OK
from irwatchd.scan import scan


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `scan` subcommand."""
    parser = subparsers.add_parser(
        "scan", help="collect and analyse old logs, respond (blocks simulated), write a report"
    )
    parser.add_argument("-c", "--config", help="config file (default: etc/irwatchd.yaml)")
    parser.add_argument("--state-dir", help="where the audit log, tickets and report go")
    parser.add_argument(
        "--source-type",
        default="auto",
        choices=["auto", "syslog", "access_log", "error_log", "json"],
        help="how to parse the lines (default: guessed per line)",
    )
    parser.add_argument("paths", nargs="+", help="log files or folders to scan")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Scan the paths and print where the report went and what it counts."""
    loaded = load_config(args.config_path if args.config else default_config_path())
    detector = build_detector(loaded)
    state_dir = Path(args.state_dir).absolute() if args.state_dir else loaded.state_dir
    result = scan(loaded, detector, state_dir, args.paths, args.source_type)
    print(f"scanned {len(result.files)} file(s), {result.lines} lines, {result.findings} findings")
    for category, count in result.by_category.most_common():
        print(f"  {category:<24}{count:>8}")
    for entry in result.files:
        if "skipped" in entry:
            print(f"skipped {entry['path']}: {entry['skipped']}")
    print(f"collection: {result.collection_path}")
    print(f"scan state: {result.scan_folder}")
    print(f"report: {result.report_path}")
    return EX_OK
