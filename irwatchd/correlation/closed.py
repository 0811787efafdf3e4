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

    def add(self, incident: Incident, reason: str) -> None:
        """Write one closed incident, with the reason it closed (`idle` or `max_open`)."""
        document = incident.to_json() | {"closed_reason": reason}
        self._file.write(json.dumps(document).encode() + b"\n")

    def read(self) -> Iterator[bytes]:
        """Yield the closed incidents' JSON texts, in the order they closed."""
        self._file.flush()
        self._file.seek(0)
        for line in self._file:
            yield line.rstrip(b"\n")

    def close(self) -> None:
        """Delete the file."""
        self._file.close()
