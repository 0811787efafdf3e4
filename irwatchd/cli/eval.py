"""`irwatchd eval`: score the detector on labelled JSONL corpus files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from irwatchd.config import load_config
from irwatchd.config_paths import default_config_path
from irwatchd.detection.evaluation import evaluate, format_table, listing
from irwatchd.detection.loader import build_detector
from irwatchd.errors import EX_OK


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `eval` subcommand."""
    parser = subparsers.add_parser("eval", help="score detection on labelled JSONL files")
    parser.add_argument("-c", "--config", help="config file (default: etc/irwatchd.yaml)")
    parser.add_argument("--source-type", default="auto", help="parse lines as this type")
    parser.add_argument("--json", action="store_true", help="print one JSON object per file")
    parser.add_argument(
        "--show-misses", action="store_true", help="also list misses and false positives"
    )
    parser.add_argument("files", nargs="+", type=Path, help="corpus files (JSONL)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate each file and print a table, or JSON with --json."""
    loaded = load_config(args.config_path if args.config else default_config_path())
    detector = build_detector(loaded)
    for path in args.files:
        result = evaluate(detector, path, args.source_type, loaded.config.correlation)
        summary = result.summary()
        if args.json:
            print(json.dumps({"file": str(path)} | summary))
        else:
            print(format_table(str(path), summary))
            print()
        if args.show_misses:
            for row in listing(result):
                print(row)
    return EX_OK
