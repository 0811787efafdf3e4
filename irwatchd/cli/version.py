"""`irwatchd version`: the irwatchd version, with Python's and the key dependencies'."""

from __future__ import annotations

import argparse
import json
import platform
from importlib import metadata

from irwatchd import __version__
from irwatchd.errors import EX_OK

DEPENDENCIES = (
    "google-re2",
    "hyperscan",
    "prometheus-client",
    "msgspec",
    "PyYAML",
    "structlog",
    "watchdog",
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `version` subcommand."""
    parser = subparsers.add_parser("version", help="print the version and exit")
    parser.add_argument(
        "--json", action="store_true", help="print a JSON object with dependency versions"
    )
    parser.set_defaults(handler=run)


def versions() -> dict[str, str | None]:
    """Return the installed version of each dependency, None for one that is missing."""
    found: dict[str, str | None] = {}
    for name in DEPENDENCIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def run(args: argparse.Namespace) -> int:
    """Print `irwatchd VERSION`, or a JSON object with --json."""
    if args.json:
        document = {
            "irwatchd": __version__,
            "python": platform.python_version(),
            "dependencies": versions(),
        }
        print(json.dumps(document, indent=2))
    else:
        print(f"irwatchd {__version__}")
    return EX_OK
