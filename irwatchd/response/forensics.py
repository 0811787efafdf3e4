"""Forensic copies: an incident's log evidence copied read-only, with a SHA-256 manifest.

Each copy is a folder `forensics/<incident id>-<UTC time>/` with three kinds of file.
`evidence.log` has the evidence lines as the daemon read them. Each `source-N.log` is the
byte range of one source file that spans the evidence lines, plus `context_bytes` on each
side, or the whole file when `forensics.scope` is `file`. `manifest.json` lists the SHA-256
of each, which `irwatchd evidence verify` checks again.
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from irwatchd.config import Forensics
from irwatchd.correlation.incidents import Incident
from irwatchd.errors import DataError, InputError
from irwatchd.jsonfiles import DamagedStateError, read_json, write_json_atomic
from irwatchd.logger import get_logger
from irwatchd.parsing.timestamps import format_rfc3339

log = get_logger(__name__)

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Return the SHA-256 of a file's bytes as hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _line_end(handle: Any, offset: int) -> int:
    """Return the offset just past the newline of the line that starts at `offset`."""
    handle.seek(offset)
    handle.readline()
    return int(handle.tell())


def _copy_source(
    source: str, offsets: list[int], target: Path, settings: Forensics
) -> dict[str, Any]:
    """Copy the configured part of one source file to `target` and describe the copy."""
    with open(source, "rb") as handle:
        stat = os.fstat(handle.fileno())
        if settings.scope == "file":
            start, end = 0, stat.st_size
        else:
            start = max(0, min(offsets) - settings.context_bytes)
            end = min(stat.st_size, _line_end(handle, max(offsets)) + settings.context_bytes)
        end = min(end, start + settings.max_copy_bytes)
        handle.seek(start)
        remaining = end - start
        with target.open("wb") as out:
            while remaining > 0:
                block = handle.read(min(CHUNK, remaining))
                if not block:
                    break
                out.write(block)
                remaining -= len(block)
            out.flush()
            os.fsync(out.fileno())
    # NOTE: after a rotation this path names a newer file than the one the evidence came from.
    # The manifest records the inode that was copied, and `evidence.log` keeps the lines.
    return {
        "source_path": source,
        "start_offset": start,
        "end_offset": end - remaining,
        "inode": stat.st_ino,
        "device": stat.st_dev,
        "source_size": stat.st_size,
        "truncated_at_max": end - start >= settings.max_copy_bytes,
    }


def save_evidence(directory: Path, incident: Incident, settings: Forensics | None = None) -> Path:
    """Copy the incident's evidence into a new read-only folder and return its manifest path."""
    settings = settings or Forensics()
    moment = datetime.now(UTC)
    folder = directory / f"{incident.id}-{moment.strftime('%Y%m%dT%H%M%S%fZ')}"
    folder.mkdir(parents=True, exist_ok=False)
    files: list[dict[str, Any]] = []

    lines_path = folder / "evidence.log"
    with lines_path.open("w", encoding="utf-8", errors="replace") as handle:
        for item in incident.evidence:
            handle.write(f"{item['line']}\n")
        handle.flush()
        os.fsync(handle.fileno())
    files.append({"name": lines_path.name, "kind": "evidence_lines"})

    offsets_by_source: dict[str, list[int]] = {}
    for item in incident.evidence:
        offsets_by_source.setdefault(str(item["path"]), []).append(int(item["offset"]))  # type: ignore[call-overload]
    for number, (source, offsets) in enumerate(sorted(offsets_by_source.items()), start=1):
        target = folder / f"source-{number}.log"
        try:
            description = _copy_source(source, offsets, target, settings)
        except OSError as error:
            log.error(
                "forensic_copy_failed", incident_id=incident.id, source=source, error=str(error)
            )
            target.unlink(missing_ok=True)
            continue
        files.append({"name": target.name, "kind": f"source_{settings.scope}"} | description)

    for entry in files:
        path = folder / entry["name"]
        entry["sha256"] = sha256_file(path)
        entry["size"] = path.stat().st_size
        entry["copied_at"] = format_rfc3339(datetime.now(UTC))
        os.chmod(path, 0o444)
    manifest = {
        "incident_id": incident.id,
        "copied_at": format_rfc3339(moment),
        "scope": settings.scope,
        "files": files,
    }
    manifest_path = folder / "manifest.json"
    write_json_atomic(manifest_path, manifest, mode=0o444)
    os.chmod(folder, 0o555)  # noqa: S103 - read and list only, for every reader of evidence
    return manifest_path


def verify_manifest(manifest_path: Path) -> int:
    """Hash every file a manifest lists again; return how many matched or raise `DataError`."""
    try:
        manifest = read_json(manifest_path, None)
    except DamagedStateError as error:
        raise DataError(
            f"{manifest_path} is damaged ({error.problem}); the evidence in "
            f"{manifest_path.parent} cannot be verified and may have been tampered with"
        ) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise DataError(f"{manifest_path} is damaged: not a forensic manifest (no `files` list)")
    for entry in manifest["files"]:
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("name"), str)
            or not isinstance(entry.get("sha256"), str)
        ):
            raise DataError(
                f"{manifest_path} is damaged: a `files` entry lacks a `name` or `sha256` string"
            )
        path = manifest_path.parent / entry["name"]
        if not path.is_file():
            raise DataError(f"{path} is missing; it is listed in {manifest_path}")
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise DataError(
                f"{path} was modified: SHA-256 {actual} does not match {entry['sha256']} "
                f"in {manifest_path}"
            )
    return len(manifest["files"])


def verify_all(directory: Path) -> tuple[int, int]:
    """Verify every manifest under a forensics folder; return (manifests, files) checked."""
    if not directory.is_dir():
        raise InputError(f"{directory} does not exist; pass --state-dir or a forensics folder")
    manifests = sorted(directory.glob("*/manifest.json"))
    if (directory / "manifest.json").is_file():
        manifests.insert(0, directory / "manifest.json")
    files = 0
    for manifest in manifests:
        files += verify_manifest(manifest)
    return len(manifests), files
