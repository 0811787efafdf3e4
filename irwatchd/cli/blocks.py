"""`irwatchd blocks list|add|remove`: the state directory's blocks, and the firewall when idle.

Every change goes to `blocks.json` and the audit log. When no daemon has locked the state
directory, the CLI also applies the change to the configured back-end itself. When a daemon
runs, the daemon applies it within one poll interval.
"""

from __future__ import annotations

import argparse
import getpass
import json
import time
from datetime import UTC, datetime
from pathlib import Path

from irwatchd.audit.log import AuditLog
from irwatchd.audit.records import action_record
from irwatchd.config import load_config
from irwatchd.config_paths import default_config_path
from irwatchd.daemon.lock import read_pid
from irwatchd.detection.addresses import parse_address
from irwatchd.errors import EX_OK, EX_USAGE, DataError, IrwatchdError, UnavailableError
from irwatchd.parsing.timestamps import format_rfc3339
from irwatchd.response.allowlist import Allowlist
from irwatchd.response.backends import (
    BackendError,
    backend_problems,
    build_backend,
    canonical_address,
)
from irwatchd.response.blocking import BlockStore, blockable_address, check_block_seconds
from irwatchd.response.responder import StatePaths, add_state_options
from irwatchd.state_dir import require_directory


class UsageError(IrwatchdError):
    """An argument of `irwatchd blocks` that is not valid."""

    exit_code = EX_USAGE


def _seconds(text: str) -> float:
    """Parse `--seconds`: a finite number from 1 to 10 years."""
    try:
        return check_block_seconds(float(text))
    except ValueError as error:
        message = str(error) if "block duration" in str(error) else f"{text!r} is not a number"
        raise argparse.ArgumentTypeError(message) from None


def _address(text: str) -> str:
    """Return the canonical address, or raise `UsageError` saying why it cannot be blocked."""
    try:
        return blockable_address(text)
    except ValueError as error:
        raise UsageError(
            f"{text!r} cannot be blocked: {error}; give a host address such as "
            "192.0.2.7 or 2001:db8::7"
        ) from None


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `blocks` subcommand and its actions."""
    parser = subparsers.add_parser("blocks", help="list, add or remove blocked addresses")
    actions = parser.add_subparsers(dest="blocks_command", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="list active blocks")
    listing.add_argument("--json", action="store_true", help="print one JSON object per block")
    add_state_options(listing)
    listing.set_defaults(handler=run_list)

    add = actions.add_parser("add", help="block an address")
    add.add_argument("address", help="IPv4 or IPv6 address")
    add.add_argument(
        "--seconds",
        type=_seconds,
        help="block duration in seconds, from 1 to 315360000 (10 years) (default: from the config)",
    )
    add.add_argument("--reason", default="added by hand", help="reason stored with the block")
    add_state_options(add)
    add.set_defaults(handler=run_add)

    remove = actions.add_parser(
        "remove", help="lift a block; an address that is not blocked is not an error"
    )
    remove.add_argument("address", help="IPv4 or IPv6 address")
    add_state_options(remove)
    remove.set_defaults(handler=run_remove)


def _store(args: argparse.Namespace) -> tuple[BlockStore, StatePaths, bool]:
    """Return the block store, the state layout, and whether a daemon is running on it."""
    config_path = args.config_path if args.config else default_config_path()
    loaded = load_config(config_path)  # the allowlist and back-end: a broken config stops here
    state_dir = Path(args.state_dir).absolute() if args.state_dir else loaded.state_dir
    paths = StatePaths(require_directory(state_dir))
    settings = loaded.config.blocking
    daemon_running = read_pid(paths.root) is not None
    store = BlockStore(
        paths.blocks,
        build_backend(settings),
        Allowlist(settings.allowlist),
        settings,
        apply=not daemon_running,
    )
    return store, paths, daemon_running


def _audit(
    paths: StatePaths, action: str, outcome: str, address: str | None, details: dict[str, object]
) -> None:
    audit = AuditLog(paths.audit_log)
    try:
        audit.append(action_record(action, outcome, source_ip=address, details=details))
    finally:
        audit.close()


def run_list(args: argparse.Namespace) -> int:
    """Print the active blocks."""
    store, _, _ = _store(args)
    now = time.time()
    for address, entry in sorted(store.active(now).items()):
        if args.json:
            print(json.dumps(entry, ensure_ascii=False))
            continue
        expires = format_rfc3339(datetime.fromtimestamp(float(entry["expires_at"]), UTC))
        print(
            f"{address:<40} expires {expires} (in {int(float(entry['expires_at']) - now)} s)  "
            f"offence {entry.get('offence', 1)}  {entry.get('backend')}  {entry.get('reason')}"
        )
    return EX_OK


def _check_backend(store: BlockStore, running: bool) -> None:
    """Raise `UnavailableError` when this command must apply the change and cannot."""
    if running:
        return
    problems = backend_problems(store.settings)
    if problems:
        reasons = "; ".join(f"{key}: {message}" for key, message in problems)
        raise UnavailableError(f"the blocking back-end cannot run ({reasons}); nothing changed")


def run_add(args: argparse.Namespace) -> int:
    """Block one address and audit it."""
    _address(args.address)
    store, paths, running = _store(args)
    _check_backend(store, running)
    actor = getpass.getuser()
    result = store.block(
        args.address, reason=args.reason, incident_id=None, seconds=args.seconds, source="cli"
    )
    details: dict[str, object] = {
        "block_result": result.outcome,
        "backend": store.backend.name,
        "by": actor,
        "applied_by": "daemon" if running else "cli",
        "step": "requested" if running else "applied",
        "seconds": result.seconds,
        "error": result.error,
        "requested_address": args.address,
    }
    outcome = {"blocked": "success", "failed": "failure"}.get(result.outcome, "unknown")
    _audit(
        paths, "block", outcome, None if result.outcome == "invalid" else result.address, details
    )
    if result.outcome == "invalid":
        raise UsageError(f"{args.address!r} cannot be blocked: {result.error}")
    if result.outcome == "allowlisted":
        raise DataError(f"{result.address} is in blocking.allowlist; remove it there to block it")
    if result.outcome == "failed":
        raise UnavailableError(
            f"blocking {result.address} failed: {result.error}; nothing was recorded"
        )
    print(f"{result.address}: {result.outcome}" + ("" if running else f" ({store.backend.name})"))
    return EX_OK


def run_remove(args: argparse.Namespace) -> int:
    """Lift one block and audit it."""
    try:
        canonical_address(args.address.split("%", 1)[0])
    except ValueError:
        raise UsageError(
            f"{args.address!r} is not an IP address, such as 192.0.2.7 or 2001:db8::7"
        ) from None
    store, paths, running = _store(args)
    actor = getpass.getuser()
    try:
        was_blocked = store.unblock(args.address)
    except BackendError as error:
        raise UnavailableError(
            f"unblocking {args.address} failed: {error}; the block stays recorded"
        ) from None
    address = args.address if parse_address(args.address) is not None else None
    _audit(
        paths,
        "unblock",
        "success",
        address,
        {
            "requested_address": args.address,
            "was_blocked": was_blocked,
            "by": actor,
            "applied_by": "daemon" if running else "cli",
            "step": "requested" if running else "applied",
        },
    )
    if was_blocked:
        print(f"{args.address}: unblocked")
    else:
        print(f"not blocked: {args.address} (nothing changed)")
    return EX_OK
