"""`irwatchd audit verify|tail`: check the hash chain, and read the audit log as it grows."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, TextIO

from irwatchd.audit.log import chain_files
from irwatchd.audit.verify import verify_files, verify_log
from irwatchd.errors import EX_OK, InputError
from irwatchd.response.responder import add_state_options, state_paths_for

FOLLOW_INTERVAL_SECONDS = 0.5
_COLOURS = {
    "success": "\033[32m",
    "failure": "\033[31m",
    "unknown": "\033[33m",
    "alert": "\033[1;31m",
}
_RESET = "\033[0m"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `audit verify` and `audit tail`."""
    parser = subparsers.add_parser("audit", help="verify or read the tamper-evident audit log")
    actions = parser.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    verify = actions.add_parser(
        "verify", help="check the hash chain; exit 0 when intact, 65 naming the first broken record"
    )
    verify.add_argument(
        "file",
        nargs="?",
        help="audit log to check alone (default: the state "
        "directory's audit.jsonl with its rotated files)",
    )
    add_state_options(verify)
    verify.set_defaults(handler=run_verify)

    tail = actions.add_parser("tail", help="print the last records, optionally following new ones")
    tail.add_argument("file", nargs="?", help="audit log to read (default: the state directory's)")
    tail.add_argument(
        "-n", "--lines", type=int, default=10, help="records to print first (default: 10)"
    )
    tail.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new records, across rotation"
    )
    tail.add_argument(
        "--json", action="store_true", help="print the records as JSON lines, unchanged"
    )
    add_state_options(tail)
    tail.set_defaults(handler=run_tail)


def _log_path(args: argparse.Namespace) -> Path:
    if args.file:
        return Path(args.file)
    return state_paths_for(args.config, args.state_dir).audit_log


def run_verify(args: argparse.Namespace) -> int:
    """Verify the chain and print a one-line summary."""
    report = verify_files([Path(args.file)]) if args.file else verify_log(_log_path(args))
    start = (
        "seq 1"
        if report.starts_at_genesis
        else f"seq {report.first_seq} (earlier files rotated away)"
    )
    print(
        f"audit log intact: {report.records} records in {len(report.files)} file(s), "
        f"from {start} to seq {report.last_seq}"
    )
    print(
        f"note: records cut from the end leave no trace in the chain; check that seq "
        f"{report.last_seq} matches the last seq in a copy kept on another host",
        file=sys.stderr,
    )
    return EX_OK


def format_record(record: dict[str, Any], colour: bool) -> str:
    """Return one readable line for an audit record."""
    event = record.get("event", {})
    chain = record.get("irwatchd", {}).get("audit", {})
    action = str(event.get("action", "?"))
    outcome = str(event.get("outcome") or ("alert" if event.get("kind") == "alert" else "-"))
    details = record.get("irwatchd", {})
    parts = [
        str(record.get("@timestamp", "-")),
        f"#{chain.get('seq', '?')}",
        f"{action:<14}",
        f"{outcome:<12}",
        f"src={(record.get('source') or {}).get('ip') or '-'}",
    ]
    if record.get("rule"):
        parts.append(f"rule={record['rule'].get('id')}")
    if details.get("incident_id"):
        parts.append(f"incident={details['incident_id']}")
    if (record.get("user") or {}).get("name"):
        # json.dumps with ASCII output escapes every control character (C0 and C1) and quote.
        parts.append(f"user={json.dumps(record['user']['name'])}")
    line = "  ".join(parts)
    if colour and outcome in _COLOURS:
        return f"{_COLOURS[outcome]}{line}{_RESET}"
    return line


def _seq_of(raw: bytes) -> int | None:
    try:
        return int(json.loads(raw)["irwatchd"]["audit"]["seq"])
    except (ValueError, KeyError, TypeError):
        return None


class _Printer:
    """Prints records once each, remembering the last sequence number printed."""

    def __init__(self, args: argparse.Namespace, out: TextIO, colour: bool) -> None:
        self.args = args
        self.out = out
        self.colour = colour
        self.last_seq: int | None = None

    def emit(self, raw: bytes) -> None:
        """Print one raw line as JSON or as a readable line."""
        text = raw.decode("utf-8", errors="replace").rstrip("\n")
        if not text:
            return
        self.last_seq = _seq_of(raw) or self.last_seq
        if self.args.json:
            self.out.write(text + "\n")
            return
        try:
            record = json.loads(text)
        except ValueError:
            self.out.write(f"(unreadable record) {text}\n")
            return
        self.out.write(format_record(record, self.colour) + "\n")

    def catch_up(self, path: Path) -> None:
        """Print records of rotated files newer than the last one printed (several rotations)."""
        for rotated in chain_files(path)[:-1]:
            with rotated.open("rb") as handle:
                for raw in handle:
                    seq = _seq_of(raw)
                    if seq is not None and (self.last_seq is None or seq > self.last_seq):
                        self.emit(raw)


def run_tail(args: argparse.Namespace) -> int:
    """Print the last N records, then follow the log when asked, across rotations."""
    path = _log_path(args)
    if not path.exists():
        raise InputError(f"{path} not found; pass the daemon's --state-dir or an audit log file")
    out = sys.stdout
    colour = out.isatty() and not args.json and "NO_COLOR" not in os.environ
    printer = _Printer(args, out, colour)
    handle = path.open("rb")
    try:
        for raw in deque(handle, maxlen=max(0, args.lines)):
            printer.emit(raw)
        out.flush()
        if not args.follow:
            return EX_OK
        inode = os.fstat(handle.fileno()).st_ino
        pending = b""
        while True:
            chunk = handle.readline()
            if chunk:
                pending += chunk
                if pending.endswith(b"\n"):
                    printer.emit(pending)
                    pending = b""
                    out.flush()
                continue
            time.sleep(FOLLOW_INTERVAL_SECONDS)
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                continue
            if current != inode:
                # Rotated: finish the old file, print what newer rotated files hold, then
                # follow the new live file from its start.
                for raw in handle:
                    printer.emit(pending + raw)
                    pending = b""
                handle.close()
                printer.catch_up(path)
                handle = path.open("rb")
                inode = os.fstat(handle.fileno()).st_ino
                out.flush()
    finally:
        handle.close()
