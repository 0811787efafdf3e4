"""`irwatchd run`: the daemon in the foreground (systemd's way) or detached with --daemonize."""

from __future__ import annotations

import argparse
import os

from irwatchd.config_paths import default_config_path
from irwatchd.daemon.runner import Daemon
from irwatchd.daemon.settings import parse_watch_option
from irwatchd.errors import CantCreateError

DAEMON_LOG = "irwatchd.log"
"""The daemon's own log in the state directory when it runs with --daemonize."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `run` subcommand."""
    parser = subparsers.add_parser("run", help="run the daemon in the foreground")
    parser.add_argument("-c", "--config", help="config file (default: etc/irwatchd.yaml)")
    parser.add_argument(
        "--state-dir", help="directory for the audit log, alerts, tickets and checkpoints"
    )
    parser.add_argument(
        "--watch",
        action="append",
        metavar="PATH[:TYPE]",
        help="watch this file, directory or glob instead of the configured sources "
        "(TYPE: syslog, access_log, error_log, json or auto); repeatable",
    )
    parser.add_argument(
        "--polling", action="store_true", help="poll for changes instead of using inotify"
    )
    parser.add_argument(
        "--daemonize",
        action="store_true",
        help="detach from the terminal (without systemd) and append the daemon's log to "
        f"STATE_DIR/{DAEMON_LOG}",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Build the daemon (validating everything first) and run it until stopped."""
    config_path = args.config_path if args.config else default_config_path()
    # Absolute paths, because a detached daemon runs in `/` and reloads read them again.
    if config_path is not None:
        config_path = config_path.absolute()
    state_dir = os.path.abspath(args.state_dir) if args.state_dir else None
    watch = [_absolute_watch(value) for value in args.watch] if args.watch else None
    daemon = Daemon(config_path, state_dir, watch, force_polling=args.polling)
    if not args.daemonize:
        return daemon.run()

    import daemon as python_daemon  # python-daemon, imported only when detaching

    log_path = daemon.paths.root / DAEMON_LOG
    try:
        daemon.paths.root.mkdir(parents=True, exist_ok=True)
        log_file = log_path.open("a", encoding="utf-8")
    except OSError as error:
        raise CantCreateError(
            f"cannot open the daemon log {str(log_path)!r}: {error.strerror}; "
            "fix the permissions of the state directory or pass --state-dir"
        ) from None
    # The detached process's stderr is this file, and structlog writes to stderr.
    with (
        log_file,
        python_daemon.DaemonContext(
            working_directory="/", umask=0o027, stderr=log_file, files_preserve=[log_file]
        ),
    ):
        return daemon.run()


def _absolute_watch(value: str) -> str:
    path, kind = parse_watch_option(value)
    return f"{os.path.abspath(path)}:{kind}"
