"""Argument parsing and dispatch for every `irwatchd` subcommand."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from irwatchd import __version__, logger
from irwatchd.config_paths import CHECKOUT_CONFIG, INSTALLED_CONFIG, default_config_path
from irwatchd.errors import (
    EX_NOPERM,
    EX_OK,
    EX_SOFTWARE,
    EX_USAGE,
    ConfigError,
    IrwatchdError,
    Problem,
)

SUBCOMMANDS = (
    "run",
    "check",
    "detect",
    "scan",
    "eval",
    "blocks",
    "incidents",
    "audit",
    "evidence",
    "status",
    "reload",
    "version",
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the parser with one subparser per subcommand module that exists.

    With `command`, only that subcommand's module is imported: `detect` then leaves out the
    daemon, response and metrics modules, about 5 MiB of peak RSS.
    """
    parser = argparse.ArgumentParser(
        prog="irwatchd", description="Detect attacks in logs as they are written, and respond."
    )
    parser.add_argument("--version", action="version", version=f"irwatchd {__version__}")
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="minimum level of irwatchd's own log (default: info for run, warning for the "
        "other commands, which print their own summary)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (command,) if command in SUBCOMMANDS else SUBCOMMANDS:
        try:
            module = importlib.import_module(f"irwatchd.cli.{name}")
        except ModuleNotFoundError as error:
            # NOTE: a subcommand whose module is not written yet is left out of the help.
            if error.name != f"irwatchd.cli.{name}":
                raise
            continue
        module.add_parser(subparsers)
    return parser


# Commands that load rules, so the built-in defaults without a config file cannot serve them.
_NEEDS_CONFIG = frozenset({"run", "check", "detect", "scan", "eval"})
# Commands that need a config only to find the state directory.
_NEEDS_CONFIG_OR_STATE_DIR = frozenset({"status", "reload"})


def _require_config(args: argparse.Namespace) -> None:
    """Raise `ConfigError` when a command needs a config and none was given or found.

    Without this, an installed copy with no /etc config would fall back to built-in defaults
    and fail later with a message about rules.files or a state directory under the cwd.
    """
    if args.config_path is not None or default_config_path() is not None:
        return
    needs = args.command in _NEEDS_CONFIG or (
        args.command in _NEEDS_CONFIG_OR_STATE_DIR and not getattr(args, "state_dir", None)
    )
    if not needs:
        return
    message = f"no config file found at {INSTALLED_CONFIG} or {CHECKOUT_CONFIG}; pass -c FILE"
    if args.command in _NEEDS_CONFIG_OR_STATE_DIR:
        message += " or --state-dir DIR"
    raise ConfigError([Problem("-c", None, "", message)])


def _command_in(argv: Sequence[str]) -> str | None:
    """Return the subcommand `argv` names, or None when it names none before any other option."""
    arguments = iter(argv)
    for argument in arguments:
        if argument == "--log-level":
            next(arguments, None)
        elif argument.startswith("--log-level="):
            continue
        elif argument in SUBCOMMANDS:
            return argument
        else:
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand and return its exit code."""
    parser = build_parser(_command_in(sys.argv[1:] if argv is None else argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:
        code = exit_request.code
        return EX_OK if code in (0, None) else EX_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EX_USAGE
    logger.configure(args.log_level or ("info" if args.command == "run" else "warning"))
    config = getattr(args, "config", None)
    args.config_path = Path(config) if config else None
    try:
        _require_config(args)
        return int(args.handler(args))
    except IrwatchdError as error:
        print(f"irwatchd {args.command}: {error}", file=sys.stderr)
        return error.exit_code
    except BrokenPipeError:
        # The reader of our output went away (`irwatchd detect ... | head`); that is not an error.
        sys.stderr.close()
        return EX_OK
    except KeyboardInterrupt:
        return 130
    except PermissionError as error:
        print(
            f"irwatchd {args.command}: permission denied on {error.filename!r}; run as a user "
            "that may access it: root, or a member of its group (adm for logs on Debian, "
            "irwatchd for the state directory)",
            file=sys.stderr,
        )
        return EX_NOPERM
    except Exception:
        # A bug, not an operator error: log the traceback (to the journal under systemd) and
        # exit 70, which systemd's Restart=on-failure restarts.
        logger.get_logger(__name__).exception("command_crashed", command=args.command)
        return EX_SOFTWARE
