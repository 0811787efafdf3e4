"""`irwatchd status`: whether the daemon runs, and what it is doing, from the state directory."""

from __future__ import annotations

import argparse
import json
from typing import Any

from irwatchd.config_paths import default_config_path
from irwatchd.daemon.control import DaemonState, inspect
from irwatchd.errors import EX_OK, EX_UNAVAILABLE
from irwatchd.state_dir import locate_state_dir


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `status` subcommand."""
    parser = subparsers.add_parser(
        "status", help="show whether the daemon runs and what it watches; exit 0 or 69"
    )
    parser.add_argument("-c", "--config", help="config file (default: etc/irwatchd.yaml)")
    parser.add_argument("--state-dir", help="state directory of the daemon (default: from config)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the status; exit 0 when the daemon runs and 69 when it does not."""
    config_path = args.config_path if args.config else default_config_path()
    state = inspect(locate_state_dir(config_path, args.state_dir))
    if args.json:
        print(json.dumps(status_document(state), indent=2))
    else:
        print(format_status(state))
    return EX_OK if state.is_running else EX_UNAVAILABLE


def status_document(state: DaemonState) -> dict[str, Any]:
    """Merge the last status file with the lock's current state.

    `running` and `pid` come from the lock, because a killed daemon leaves a status file
    that still has `running: true`.
    """
    document: dict[str, Any] = dict(state.status or {})
    document["running"] = state.is_running
    document["pid"] = state.pid
    document["state_dir"] = str(state.state_dir)
    document["status_age_seconds"] = (
        None if state.status_age_seconds is None else round(state.status_age_seconds, 3)
    )
    document["stale"] = state.is_stale
    document["free_bytes"] = state.free_bytes
    return document


def format_status(state: DaemonState) -> str:
    """Format the status for a person, one fact per line."""
    status = state.status or {}
    if state.is_running:
        lines = [f"irwatchd is running, PID {state.pid}, since {status.get('started_at', '?')}"]
    else:
        lines = [f"irwatchd is not running on {state.state_dir}"]
        if status:
            lines.append(f"last status written at {status.get('updated_at', '?')}:")
    if state.is_out_of_space:
        # The daemon cannot report this itself: its status file is one of the writes that fail.
        if state.is_stale:
            effect = (
                "the daemon cannot write its status, and most likely not its audit records "
                "either; it retries them until space is freed"
            )
        elif state.is_running:
            effect = "once it is full, audit records, tickets and the status are not written"
        else:
            effect = "a daemon started on it could not write its audit records"
        lines.append(
            f"WARNING: the file system of {state.state_dir} has only {state.free_bytes} bytes "
            f"free; {effect}"
        )
    elif state.is_stale:
        lines.append(
            f"WARNING: the status is {_age(state)} old; the main loop may be stuck "
            "(see `journalctl -u irwatchd`)"
        )
    if not status:
        return "\n".join(lines)
    lines += _problem_lines(status)
    lines += [
        f"  config:       {status.get('config_path') or 'built-in defaults'}",
        f"  state dir:    {state.state_dir}",
        f"  watch mode:   {status.get('watch_mode')}",
        f"  lines read:   {status.get('lines_read')} ({status.get('lines_per_second')} per second)",
        f"  findings:     {status.get('findings')}",
        f"  incidents:    {status.get('open_incidents')} open",
        f"  blocks:       {status.get('active_blocks')} active",
        "  queues:       "
        + ", ".join(f"{name} {depth}" for name, depth in status.get("queues", {}).items()),
        f"  last reload:  {_format_reload(status.get('last_reload'))}",
        f"  metrics:      {_format_metrics(status.get('metrics'))}",
        f"  status age:   {_age(state)}",
    ]
    files = status.get("files", [])
    lines.append(f"  files ({len(files)}):")
    for row in files:
        lines.append(
            f"    {row['path']}  offset {row['offset']}  lag {row['lag_bytes']} bytes"
            f"  ({row['source_type']})"
        )
    return "\n".join(lines)


def _problem_lines(status: dict[str, Any]) -> list[str]:
    """Return a WARNING line for each warning and a failing write, and the last error."""
    lines = [f"WARNING: {warning}" for warning in status.get("warnings") or []]
    blocking = status.get("blocking") or {}
    if blocking and not blocking.get("healthy", True):
        lines.append(
            f"WARNING: blocking back-end {blocking.get('backend')} is failing: "
            f"{blocking.get('last_error')}; blocks are recorded but not enforced until it works"
        )
    error = status.get("last_error")
    if isinstance(error, dict):
        text = (
            f"{error.get('operation')} failed at {error.get('time')} on {error.get('path')}: "
            f"{error.get('error')}"
        )
        if status.get("degraded"):
            lines.append(f"WARNING: degraded, writes are failing: {text}; {error.get('hint')}")
        else:
            lines.append(f"  last error:   {text} (recovered since)")
    return lines


def _age(state: DaemonState) -> str:
    if state.status_age_seconds is None:
        return "unknown"
    return f"{state.status_age_seconds:.1f} s"


def _format_reload(outcome: Any) -> str:
    if not isinstance(outcome, dict):
        return "none since start"
    text = f"{outcome.get('time')} {outcome.get('result')}"
    if outcome.get("rules") is not None:
        text += f", {outcome['rules']} rules"
    if outcome.get("restart_required"):
        text += f"; restart to apply {', '.join(outcome['restart_required'])}"
    if outcome.get("error"):
        text += f": {outcome['error']}"
    return text


def _format_metrics(metrics: Any) -> str:
    if not isinstance(metrics, dict) or not metrics.get("enabled"):
        return "off"
    if metrics.get("error"):
        return f"failed to listen: {metrics['error']}"
    return f"http://{metrics.get('listen')}/metrics"
