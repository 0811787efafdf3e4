"""`irwatchd run`: the daemon in the foreground (systemd's way) or detached with --daemonize."""

from __future__ import annotations

import argparse

from irwatchd.config import default_config_path
from irwatchd.daemon.runner import Daemon


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
        "--daemonize", action="store_true", help="detach from the terminal (without systemd)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Build the daemon (validating everything first) and run it until stopped."""
    config_path = args.config_path if args.config else default_config_path()
    daemon = Daemon(config_path, args.state_dir, args.watch, force_polling=args.polling)
    if args.daemonize:
        import daemon as python_daemon  # python-daemon, imported only when detaching

        with python_daemon.DaemonContext(working_directory="/", umask=0o027):
            return daemon.run()
    return daemon.run()
