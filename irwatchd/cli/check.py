"""`irwatchd check`: validate the config, rules and blocking back-end, and run rule examples."""

from __future__ import annotations

import argparse
import sys

from irwatchd.config import default_config_path, load_config
from irwatchd.detection.examples import check_examples
from irwatchd.detection.loader import build_detector
from irwatchd.errors import EX_CONFIG, EX_OK
from irwatchd.response.backends import backend_problems


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `check` subcommand."""
    parser = subparsers.add_parser("check", help="validate config and rules; exit 0 or 78")
    parser.add_argument("-c", "--config", help="config file (default: etc/irwatchd.yaml)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Validate, print what is wrong, and exit 78 on any problem."""
    path = args.config_path if args.config else default_config_path()
    loaded = load_config(path)
    backend = backend_problems(loaded.config.blocking)
    for key, message in backend:
        print(f"{path}: {key}: {message}", file=sys.stderr)
    detector = build_detector(loaded)
    problems = check_examples(detector)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"irwatchd check: {len(problems)} rule example(s) failed", file=sys.stderr)
    if backend:
        print("irwatchd check: the blocking back-end cannot run", file=sys.stderr)
    if problems or backend:
        return EX_CONFIG
    print(f"{path}: OK, {len(detector.rules)} rules, all examples pass")
    return EX_OK
