"""One-pass scan of old logs: collect copies, detect and correlate, respond, write a report.

A scan runs the same rules, windows and policy as the daemon, with two differences: windows
use the times written in the log (old lines are correlated as they happened), and blocking is
always simulated, because the sources of an old attack may be long gone or reassigned.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from irwatchd.audit.log import AuditLog
from irwatchd.audit.records import action_record
from irwatchd.config import LoadedConfig
from irwatchd.detection.batch import StreamTotals, detect_file
from irwatchd.detection.engine import Detector
from irwatchd.errors import InputError
from irwatchd.jsonfiles import write_json_atomic
from irwatchd.parsing.timestamps import format_rfc3339
from irwatchd.response.responder import Responder, StatePaths
from irwatchd.sources.tailer import SKIPPED_SUFFIXES, is_binary

log = structlog.get_logger(__name__)


@dataclass
class ScanResult:
    """What a scan read and found, and where it wrote its report."""

    files: list[dict[str, Any]] = field(default_factory=list)
    lines: int = 0
    findings: int = 0
    by_category: Counter[str] = field(default_factory=Counter)
    by_severity: Counter[str] = field(default_factory=Counter)
    by_source: Counter[str] = field(default_factory=Counter)
    report_path: Path | None = None
    collection_path: Path | None = None


def expand_inputs(paths: list[str]) -> list[Path]:
    """Expand directories into their regular files; raise `InputError` for a missing path."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.iterdir()):
                if child.is_file() and not child.name.endswith(SKIPPED_SUFFIXES):
                    files.append(child)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"{raw!r} does not exist or is not a file or directory; "
                             "pass log files or folders to scan")  # fmt: skip
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def collect(files: list[Path], folder: Path) -> list[dict[str, Any]]:
    """Copy each file into `folder` with its metadata and hash; return the collection entries."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, source in enumerate(files):
        target = folder / f"{index:03d}-{source.name}"
        shutil.copy2(source, target)
        os.chmod(target, 0o444)
        info = source.stat()
        entries.append({
            "source_path": str(source.resolve()),
            "copy_path": str(target),
            "size": info.st_size,
            "mtime": format_rfc3339(datetime.fromtimestamp(info.st_mtime, UTC)),
            "inode": info.st_ino,
            "sha256": _sha256(target),
        })  # fmt: skip
    return entries


def scan(
    loaded: LoadedConfig,
    detector: Detector,
    state_dir: Path,
    inputs: list[str],
    source_type: str = "auto",
) -> ScanResult:
    """Collect, analyse and respond to the given logs, then write the incident report."""
    files = expand_inputs(inputs)
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    paths = StatePaths(state_dir)
    paths.create()
    result = ScanResult()
    collection_folder = paths.reports / "collections" / stamp
    entries = collect(files, collection_folder)
    result.collection_path = collection_folder / "collection.json"
    write_json_atomic(
        result.collection_path, {"collected_at": format_rfc3339(started), "files": entries}
    )
    simulated = loaded.config.model_copy(
        update={"blocking": loaded.config.blocking.model_copy(update={"backend": "simulate"})}
    )
    audit = AuditLog(paths.audit_log)
    responder = Responder(LoadedConfig(simulated, loaded.path), paths, audit, live=False)
    try:
        audit.append(
            action_record("scan_started", "success", details={"files": [str(f) for f in files]})
        )
        for path in files:
            if is_binary(str(path)):
                log.warning("scan_binary_skipped", path=str(path))
                result.files.append({"path": str(path), "lines": 0, "skipped": "binary"})
                continue
            totals = StreamTotals()
            with path.open("rb") as handle:
                findings = detect_file(
                    detector, handle, source_type, str(path.resolve()),
                    loaded.config.max_line_bytes, totals=totals,
                )  # fmt: skip
                for finding in findings:
                    result.findings += 1
                    responder.handle(finding)
            lines_in_file = totals.lines
            result.lines += lines_in_file
            result.files.append({"path": str(path), "lines": lines_in_file})
        audit.sync()
        for incident in responder.incidents.open_incidents():
            result.by_category[incident.category] += incident.count
            result.by_severity[incident.severity] += incident.count
            result.by_source[incident.source_ip or "unknown"] += incident.count
        report = {
            "report_type": "irwatchd-incident-report",
            "generated_at": format_rfc3339(datetime.now(UTC)),
            "scan_started_at": format_rfc3339(started),
            "collection": str(result.collection_path),
            "files": result.files,
            "lines_read": result.lines,
            "findings": result.findings,
            "counts": {
                "by_category": dict(result.by_category.most_common()),
                "by_severity": dict(result.by_severity.most_common()),
                "by_source_ip": dict(result.by_source.most_common()),
            },
            "incidents": [incident.to_json() for incident in responder.incidents.open_incidents()],
            "blocks_simulated": sorted(responder.blocks.active()),
        }
        result.report_path = paths.reports / "incidents" / f"incident-report-{stamp}.json"
        write_json_atomic(result.report_path, report)
        audit.append(action_record("scan_finished", "success",
                                   details={"report_path": str(result.report_path),
                                            "findings": result.findings}))  # fmt: skip
    finally:
        responder.close()
        audit.close()
    return result
