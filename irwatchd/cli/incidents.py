"""`irwatchd incidents list|show|ack|close`: read and change tickets in the state directory.

The CLI edits the ticket files directly, under the tickets lock, whether or not the daemon
runs. A running daemon picks up an ack or close before it next touches that incident, and a
finding for a closed incident opens a new ticket that refers to the closed one.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from irwatchd.audit.log import AuditLog
from irwatchd.audit.records import action_record
from irwatchd.errors import EX_DATAERR, EX_OK
from irwatchd.jsonfiles import DamagedStateError, read_json_object
from irwatchd.response.responder import StatePaths, add_state_options, state_paths_for
from irwatchd.response.tickets import TicketStore


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `incidents` subcommand and its actions."""
    parser = subparsers.add_parser("incidents", help="list, show, acknowledge or close incidents")
    actions = parser.add_subparsers(dest="incidents_command", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="list tickets, newest activity first")
    listing.add_argument(
        "--status", choices=["open", "acknowledged", "closed"], help="only this status"
    )
    listing.add_argument("--json", action="store_true", help="print one JSON object per ticket")
    add_state_options(listing)
    listing.set_defaults(handler=run_list)

    show = actions.add_parser("show", help="print one ticket as JSON")
    show.add_argument("incident_id", help="incident id, such as inc-0123456789abcdef")
    add_state_options(show)
    show.set_defaults(handler=run_show)

    for name, status, text in (
        ("ack", "acknowledged", "acknowledge"),
        ("close", "closed", "close"),
    ):
        action = actions.add_parser(name, help=f"{text} an incident")
        action.add_argument("incident_id", help="incident id, such as inc-0123456789abcdef")
        action.add_argument("--note", help="a note stored in the ticket's status history")
        if name == "ack":
            action.add_argument(
                "--reopen",
                action="store_true",
                help="acknowledge the incident even when it is closed, which reopens it",
            )
        add_state_options(action)
        action.set_defaults(handler=run_set_status, status=status)


def printable(value: object) -> str:
    """Return text with control characters escaped, so a logged value cannot drive the terminal."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in str(value))


def _tickets(paths: StatePaths) -> tuple[list[dict[str, Any]], list[DamagedStateError]]:
    """Return the readable tickets, newest activity first, and the errors of damaged ones."""
    documents = []
    damaged = []
    for path in sorted(paths.tickets.glob("inc-*.json")):
        try:
            documents.append(read_json_object(path, {}))
        except DamagedStateError as error:
            damaged.append(error)
    documents.sort(key=lambda item: str(item.get("last_seen", "")), reverse=True)
    return documents, damaged


def run_list(args: argparse.Namespace) -> int:
    """Print the tickets, one line each; exit 65 after the list when a ticket is damaged."""
    paths = state_paths_for(args.config, args.state_dir)
    tickets, damaged = _tickets(paths)
    for ticket in tickets:
        if args.status and ticket.get("status") != args.status:
            continue
        if args.json:
            print(json.dumps(ticket, ensure_ascii=False))
            continue
        print(
            f"{ticket.get('id')}  {printable(ticket.get('status')):<12}  "
            f"{printable(ticket.get('severity')):<8}  "
            f"{ticket.get('category')}  src={ticket.get('source_ip') or '-'}  "
            f"host={printable(ticket.get('host') or '-')}  count={ticket.get('count')}  "
            f"last_seen={ticket.get('last_seen')}"
        )
    for error in damaged:
        print(f"irwatchd incidents list: {error}", file=sys.stderr)
    return EX_DATAERR if damaged else EX_OK


def run_show(args: argparse.Namespace) -> int:
    """Print one ticket."""
    paths = state_paths_for(args.config, args.state_dir)
    ticket = TicketStore(paths.tickets).read(args.incident_id)
    print(json.dumps(ticket, ensure_ascii=False, indent=2))
    return EX_OK


def run_set_status(args: argparse.Namespace) -> int:
    """Set a ticket's status and audit the change."""
    paths = state_paths_for(args.config, args.state_dir)
    actor = getpass.getuser()
    ticket = TicketStore(paths.tickets).set_status(
        args.incident_id,
        args.status,
        args.note,
        actor,
        reopen=getattr(args, "reopen", False),
    )
    # The audit log's file lock and chain catch-up make this record part of the daemon's chain.
    audit = AuditLog(paths.audit_log)
    try:
        audit.append(
            action_record(
                f"incident_{args.incidents_command}",
                "success",
                incident_id=args.incident_id,
                source_ip=ticket.get("source_ip"),
                details={"status": args.status, "by": actor, "note": args.note},
            )
        )
    finally:
        audit.close()
    print(f"{args.incident_id}: {args.status}")
    return EX_OK
