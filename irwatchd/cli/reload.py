"""`irwatchd reload`: validate the daemon's config, send it SIGHUP, and report the outcome."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from irwatchd.config_paths import default_config_path
from irwatchd.daemon.control import inspect, require_running, send_signal, wait_for_reload
from irwatchd.daemon.settings import validate_configuration
from irwatchd.errors import EX_CONFIG, EX_OK, EX_TEMPFAIL
from irwatchd.state_dir import locate_state_dir


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `reload` subcommand."""
    parser = subparsers.add_parser(
        "reload", help="validate the config, then make the running daemon re-read it"
    )
    parser.add_argument("-c", "--config", help="config file (default: etc/irwatchd.yaml)")
    parser.add_argument("--state-dir", help="state directory of the daemon (default: from config)")
    parser.add_argument(
        "--no-wait", action="store_true", help="return after sending SIGHUP, without the outcome"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the daemon to report the outcome (default: 30)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Reload; exit 0 on success, 69 not running, 75 no outcome in time, 78 invalid config.

    The file validated is the one the daemon runs with (from its status file), so that a
    broken edit is caught here and never reaches the daemon.
    """
    option = args.config_path if args.config else default_config_path()
    state_dir = locate_state_dir(option, args.state_dir)
    state = inspect(state_dir)
    pid = require_running(state)
    status = state.status or {}
    in_use = status.get("config_path")
    config_path = Path(in_use) if in_use else option
    validate_configuration(config_path, str(state_dir), status.get("watch_override"))
    reloads_before = int(status.get("reloads", 0))
    send_signal(pid, signal.SIGHUP)
    if args.no_wait:
        print(f"irwatchd reload: {config_path} is valid; sent SIGHUP to PID {pid}")
        return EX_OK
    outcome = wait_for_reload(state_dir, reloads_before, args.timeout)
    if outcome is None:
        print(
            f"irwatchd reload: sent SIGHUP to PID {pid} but it reported no outcome within "
            f"{args.timeout:g} s; check `irwatchd status` and the daemon's log",
            file=sys.stderr,
        )
        return EX_TEMPFAIL
    if outcome.get("result") != "success":
        print(f"irwatchd reload: PID {pid} rejected the config: {outcome.get('error')}",
              file=sys.stderr)  # fmt: skip
        return EX_CONFIG
    print(f"irwatchd reload: PID {pid} reloaded {config_path}, {outcome.get('rules')} rules")
    for setting in outcome.get("restart_required", []):
        print(f"irwatchd reload: the new {setting} takes effect only after a restart",
              file=sys.stderr)  # fmt: skip
    return EX_OK
