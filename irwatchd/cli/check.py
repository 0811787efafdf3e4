"""`irwatchd check`: validate the config, rules and blocking back-end, and run rule examples."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from irwatchd.config import load_config
from irwatchd.config_paths import default_config_path
from irwatchd.daemon.settings import no_sources_problem
from irwatchd.detection.engine import Detector
from irwatchd.detection.examples import check_examples
from irwatchd.detection.loader import build_detector, config_line
from irwatchd.detection.native_rows import NativeRows, native_available
from irwatchd.errors import EX_CONFIG, EX_OK, Problem
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
    if not list(loaded.config.sources.all()):
        # Valid for `irwatchd run --watch PATH`, so a warning and not a failure.
        print(f"warning: {no_sources_problem(loaded)} (`irwatchd run` without --watch exits 78)",
              file=sys.stderr)  # fmt: skip
    state_problem = state_dir_problem(loaded.state_dir)
    if state_problem is not None:
        line = config_line(loaded, ("state_dir",))
        print(Problem(str(path), line, "state_dir", state_problem), file=sys.stderr)
    backend = backend_problems(loaded.config.blocking)
    for key, message in backend:
        line = config_line(loaded, tuple(key.split(".")))
        print(Problem(str(path), line, key, message), file=sys.stderr)
    detector = build_detector(loaded)
    problems = check_examples(detector)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"irwatchd check: {len(problems)} rule example(s) failed", file=sys.stderr)
    if backend:
        print("irwatchd check: the blocking back-end cannot run", file=sys.stderr)
    if problems or backend or state_problem:
        return EX_CONFIG
    print(f"{path}: OK, {len(detector.rules)} rules, all examples pass")
    print(native_rows_note(detector))
    return EX_OK


def native_rows_note(detector: Detector) -> str:
    """Say whether `detect` builds its syslog rows in C++ with these rules, and if not why."""
    if not native_available():
        return (
            "note: detect builds its rows in Python, because the C++ row builder is not built; "
            "install g++ python3-dev libhyperscan-dev libre2-dev and run ./run.sh "
            "(or pip install -e .) again to build it"
        )
    if not detector.has_prefilter("syslog"):
        return "note: detect builds its rows in Python, because no rule reads syslog lines"
    try:
        NativeRows(detector, datetime.now(UTC))
    except ValueError as error:
        return f"note: detect builds its syslog rows in Python, because {error}"
    return "detect: syslog rows are built by the C++ row builder"


def state_dir_problem(root: Path) -> str | None:
    """Return why `irwatchd run` could not create or write the state directory, or None.

    A folder that is missing but could be created is fine. This user's write permission on
    the nearest existing folder is judged by `os.access`, so a read-only mount or a full
    disk still shows only at `irwatchd run`.
    """
    if root.exists():
        if not root.is_dir():
            return f"{str(root)!r} is a file, not a directory; point state_dir at a directory"
        if not os.access(root, os.W_OK | os.X_OK):
            return f"{str(root)!r} is not writable by this user; run as its owner or fix it"
        return None
    parent = root.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{str(root)!r} cannot be created: {str(parent)!r} is a file, not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return (
            f"{str(root)!r} cannot be created: {str(parent)!r} is not writable by this user; "
            "create it, or run as a user that may write there"
        )
    return None
