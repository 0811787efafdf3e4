"""Forensic copies: the evidence of an incident copied read-only, with a SHA-256 manifest."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path

from irwatchd.correlation.incidents import Incident
from irwatchd.jsonfiles import write_json_atomic
from irwatchd.parsing.timestamps import format_rfc3339


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_evidence(directory: Path, incident: Incident) -> Path:
    """Copy the incident's evidence lines into a new folder and write its manifest.

    The folder holds `evidence.log` (the raw lines, in the order seen) and `manifest.json`
    with the SHA-256 of each copied file, the source paths and offsets, and the copy time.
    Both files are made read-only. Returns the manifest path.
    """
    moment = datetime.now(UTC)
    folder = directory / f"{incident.id}-{moment.strftime('%Y%m%dT%H%M%S%fZ')}"
    folder.mkdir(parents=True, exist_ok=False)
    evidence_path = folder / "evidence.log"
    with evidence_path.open("w", encoding="utf-8", errors="replace") as handle:
        for item in incident.evidence:
            handle.write(f"{item['line']}\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(evidence_path, 0o444)
    sources = []
    for item in incident.evidence:
        path = str(item["path"])
        try:
            inode: int | None = os.stat(path).st_ino
        except OSError:
            inode = None
        sources.append({"path": path, "offset": item["offset"], "inode": inode})
    manifest = {
        "incident_id": incident.id,
        "copied_at": format_rfc3339(moment),
        "files": [
            {
                "name": evidence_path.name,
                "sha256": _sha256(evidence_path),
                "size": evidence_path.stat().st_size,
                "sources": sources,
            }
        ],
    }
    manifest_path = folder / "manifest.json"
    write_json_atomic(manifest_path, manifest, mode=0o444)
    os.chmod(folder, 0o555)
    return manifest_path
