"""Incidents closed during a scan, kept as JSON lines on disk until the report lists them.

A scan closes an incident once it has been quiet for the idle time in the log's own clock,
as the daemon does, and its report lists every incident of the scan, closed or still open.
Keeping the closed ones as JSON in a temporary file lets the tracker drop them from memory.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

from irwatchd.correlation.incidents import Incident


class ClosedIncidents:
    """An unnamed temporary file with one incident's JSON per line, in the order they closed."""

    def __init__(self, folder: Path) -> None:
        self._file = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115 - closed by close()
        self._waiting: list[tuple[Incident, str]] = []

    def add(self, incident: Incident, reason: str) -> None:
        """Take an incident that closed for `reason` (`idle` or `max_open`).

        It is written by `write_waiting`, once the actions queued for it have run.
        """
        self._waiting.append((incident, reason))

    def write_waiting(self) -> None:
        """Write the incidents taken since the last call, in the order they closed."""
        for incident, reason in self._waiting:
            document = incident.to_json() | {"closed_reason": reason}
            self._file.write(json.dumps(document).encode() + b"\n")
        self._waiting.clear()

    def read(self) -> Iterator[bytes]:
        """Yield the closed incidents' JSON texts, in the order they closed."""
        self.write_waiting()
        self._file.flush()
        self._file.seek(0)
        for line in self._file:
            yield line.rstrip(b"\n")

    def close(self) -> None:
        """Delete the file."""
        self._file.close()
