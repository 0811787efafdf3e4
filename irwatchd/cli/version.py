"""`irwatchd version`: print the version."""

from __future__ import annotations

import argparse

from irwatchd import __version__


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `version` subcommand."""
    parser = subparsers.add_parser("version", help="print the version and exit")
    parser.set_defaults(handler=lambda args: print(f"irwatchd {__version__}") or 0)
