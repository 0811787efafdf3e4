"""Tickets: one JSON file per incident under `alerts/tickets/`, rewritten in place as it grows.

The daemon and `irwatchd incidents ack|close` both write tickets, under an `flock` on
`alerts/tickets/.lock`. The daemon reads a ticket's status again before each rewrite and keeps
an `acknowledged` or `closed` status that a person set, so the CLI's change is never lost.

Each ticket carries `thehive`, a TheHive alert body (POST /api/alert of TheHive 4 and the
`alert` fields of TheHive 5) built from the incident. It has title, description, severity
1-4, date in epoch milliseconds, tags, type, source, sourceRef, and observables of dataType
`ip` and `other`. TheHive has no `user` dataType, so users are `other` with a `user` tag.

A damaged ticket (invalid JSON, or not an object) is skipped by the daemon at start. When the
daemon must rewrite one, it first moves it aside to `<name>.damaged-<UTC time>`.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from irwatchd.correlation.incidents import STATUSES, Incident
from irwatchd.errors import DataError, InputError
from irwatchd.jsonfiles import (
    DamagedStateError,
    fsync_directory,
    move_aside,
    open_lock_file,
    read_json_object,
    write_json_atomic,
)
from irwatchd.logger import get_logger
from irwatchd.parsing.timestamps import format_rfc3339

log = get_logger(__name__)

THEHIVE_SEVERITY = {"low": 1, "medium": 2, "high": 3, "critical": 4}


def thehive_alert(
    incident: Incident, title: str, description: str, tags: list[str] | None = None
) -> dict[str, Any]:
    """Build the TheHive alert body for an incident; `tags` defaults to `tags_for(incident)`."""
    observables: list[dict[str, Any]] = []
    if incident.source_ip is not None:
        observables.append({"dataType": "ip", "data": incident.source_ip, "tags": ["source"]})
    for user in incident.users:
        observables.append({"dataType": "other", "data": user, "tags": ["user"]})
    return {
        "title": title,
        "description": description,
        "severity": THEHIVE_SEVERITY[incident.severity],
        "date": int(incident.first_seen.timestamp() * 1000),
        "tags": tags_for(incident) if tags is None else tags,
        "type": "irwatchd",
        "source": "irwatchd",
        "sourceRef": incident.id,
        "observables": observables,
    }


def tags_for(incident: Incident) -> list[str]:
    """Return the incident's tags: its category, host and every rule that fired."""
    tags = [f"category:{incident.category}"]
    if incident.host:
        tags.append(f"host:{incident.host}")
    return tags + [f"rule:{rule}" for rule in incident.rules]


def ticket_document(incident: Incident) -> dict[str, Any]:
    """Build the ticket JSON for an incident."""
    source = incident.source_ip or "unknown source"
    first_seen = format_rfc3339(incident.first_seen)
    last_seen = format_rfc3339(incident.last_seen)
    title = f"{incident.category} from {source}"
    description = (
        f"{incident.count} finding(s) of {incident.category} from {source} between "
        f"{first_seen} and {last_seen}; rules: {', '.join(incident.rules)}"
    )
    if incident.previous_id:
        description += f"; follows closed incident {incident.previous_id}"
    tags = tags_for(incident)
    return incident.to_json() | {
        "title": title,
        "description": description,
        "tags": tags,
        "thehive": thehive_alert(incident, title, description, tags),
    }


class TicketStore:
    """Reads and writes the ticket files of one state directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._written_mtime: dict[str, int] = {}
        # The ids of the tickets on disk, once `load_all` listed them; until then every
        # ticket may exist. Only this process creates tickets (the CLI changes existing ones).
        self._on_disk: set[str] | None = None

    def path_for(self, incident_id: str) -> Path:
        """Return the ticket file of an incident id."""
        if not incident_id.replace("-", "").isalnum():
            raise InputError(f"{incident_id!r} is not an incident id, such as inc-0123456789abcdef")
        return self.directory / f"{incident_id}.json"

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the tickets lock, shared by the daemon and the CLI."""
        descriptor = open_lock_file(self.directory / ".lock")
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)

    def status_changed_on_disk(self, incident: Incident) -> str | None:
        """Return the ticket's status if someone else rewrote the ticket since we last did."""
        if not self.may_exist(incident.id):
            return None
        path = self.path_for(incident.id)
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        if self._written_mtime.get(incident.id) == mtime:
            return None
        try:
            document = read_json_object(path, {})
        except DamagedStateError as error:
            log.error(
                "ticket_damaged", path=str(path), incident_id=incident.id, error=error.problem
            )
            return None
        status = document.get("status")
        return status if status in STATUSES and status != incident.status else None

    def write(self, incident: Incident) -> Path:
        """Write or update the incident's ticket, keeping an ack or close made by someone else."""
        with self.locked():
            return self._write_locked(incident, durable=True)

    def write_many(self, incidents: list[Incident]) -> tuple[dict[str, Path], OSError | None]:
        """Write many tickets as `write` does, under one lock and with one folder fsync.

        The files themselves are not fsynced (a power loss can leave one empty, which the
        daemon reads as damaged). Returns the path of each ticket written, by incident id,
        and the first write error; a failed ticket does not stop the others.
        """
        written: dict[str, Path] = {}
        first_error: OSError | None = None
        with self.locked():
            for incident in incidents:
                try:
                    written[incident.id] = self._write_locked(incident, durable=False)
                except OSError as error:
                    log.error("ticket_write_failed", incident_id=incident.id, error=str(error))
                    first_error = first_error or error
            if written:
                fsync_directory(self.directory)
        return written, first_error

    def may_exist(self, incident_id: str) -> bool:
        """Return whether the incident's ticket may be on disk: false only for one never written."""
        return self._on_disk is None or incident_id in self._on_disk

    def _write_locked(self, incident: Incident, *, durable: bool) -> Path:
        path = self.path_for(incident.id)
        existing = {}
        if self.may_exist(incident.id):
            existing = self._read_or_move_aside(path, incident.id)
        on_disk = existing.get("status")
        if on_disk in ("acknowledged", "closed") and on_disk != incident.status:
            incident.status = on_disk
        document = ticket_document(incident)
        if "status_history" in existing:
            document["status_history"] = existing["status_history"]
        self._written_mtime[incident.id] = write_json_atomic(
            path, document, durable=durable, indent=None
        )
        if self._on_disk is not None:
            self._on_disk.add(incident.id)
        return path

    def _read_or_move_aside(self, path: Path, incident_id: str) -> dict[str, Any]:
        """Read a ticket before a rewrite; a damaged one is moved aside and read as empty."""
        try:
            return read_json_object(path, {})
        except DamagedStateError as error:
            moved_to = move_aside(path)
            log.error(
                "ticket_damaged",
                path=str(path),
                moved_to=str(moved_to),
                incident_id=incident_id,
                error=error.problem,
                action="writing a new ticket",
            )
            return {}

    def load_all(self) -> list[Incident]:
        """Read every ticket back into incidents; an unreadable ticket is logged and skipped."""
        incidents = []
        paths = sorted(self.directory.glob("inc-*.json"))
        self._on_disk = {path.stem for path in paths}
        for path in paths:
            try:
                incidents.append(Incident.from_json(read_json_object(path, {})))
            except (ValueError, KeyError, TypeError) as error:
                log.error("ticket_unreadable", path=str(path), error=str(error))
        return incidents

    def read(self, incident_id: str) -> dict[str, Any]:
        """Return one ticket; raise `InputError` when it is missing, `DataError` when damaged."""
        path = self.path_for(incident_id)
        if not path.exists():
            raise InputError(f"no ticket for incident {incident_id} in {self.directory}")
        return read_json_object(path, {})

    def set_status(
        self,
        incident_id: str,
        status: str,
        note: str | None,
        actor: str,
        *,
        reopen: bool = False,
    ) -> dict[str, Any]:
        """Change a ticket's status (the CLI's ack and close) and return the new ticket.

        Acknowledging a closed ticket raises `DataError` unless `reopen` is set.
        """
        with self.locked():
            document = self.read(incident_id)
            if document.get("status") == "closed" and status != "closed" and not reopen:
                raise DataError(
                    f"incident {incident_id} is closed; pass --reopen to set it to {status}, "
                    "or leave it closed (a new finding opens a new incident)"
                )
            document["status"] = status
            history = document.setdefault("status_history", [])
            history.append(
                {
                    "status": status,
                    "at": format_rfc3339(datetime.now(UTC)),
                    "by": actor,
                    "note": note,
                }
            )
            write_json_atomic(self.path_for(incident_id), document, indent=None)
        return document
