"""Per-file read positions, saved atomically so a restart resumes after the last recorded line.

A checkpoint belongs to a file identity, not to a path. The identity is (device, inode) plus
the SHA-256 of the first bytes, so a rotated file keeps its checkpoint under its new name,
and a new file that got an old inode number back does not inherit it. The file also stores
the audit log's size and inode at the moment of the save, so a restart can tell which audit
records came after the checkpoints.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from irwatchd.jsonfiles import read_json, write_json_atomic
from irwatchd.logger import get_logger

log = get_logger(__name__)

FORMAT_VERSION = 2
MAX_SAVED = 1024
"""Checkpoints kept for files no longer followed (rotated away), oldest dropped first."""

Identity = tuple[int, int]
AuditPosition = tuple[int, int]
"""The audit log's (inode, size) when the checkpoints were saved."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where reading of one file stopped, and how to recognise that file again.

    `path` is the name the file was first followed under; findings keep reporting it after
    a rename, so a line read again after a crash gets the same dedup key. `location` is
    where the file was last seen on disk.
    """

    path: str
    device: int
    inode: int
    head_sha256: str
    head_size: int
    offset: int
    line_number: int | None
    location: str = ""

    @property
    def identity(self) -> Identity:
        """The (device, inode) pair."""
        return (self.device, self.inode)

    @property
    def where(self) -> str:
        """The location, or the path for checkpoints saved before locations existed."""
        return self.location or self.path


class CheckpointStore:
    """Every checkpoint of the state directory, in one JSON file, newest last."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.audit_position: AuditPosition | None = None
        self._saved: OrderedDict[Identity, Checkpoint] = OrderedDict()
        self._load(read_json(path, {}))

    def _load(self, document: Any) -> None:
        if not isinstance(document, dict):
            log.warning(
                "checkpoints_unreadable", path=str(self.path),
                hint="files without a checkpoint start where the start_at setting says",
            )  # fmt: skip
            return
        if document.get("version") == FORMAT_VERSION:
            entries = document.get("checkpoints", [])
            position: Any = document.get("audit_position")
            try:
                self.audit_position = (int(position["inode"]), int(position["size"]))
            except (KeyError, TypeError, ValueError):
                self.audit_position = None
        else:
            entries = list(document.values())  # the first format: a mapping of path to checkpoint
        for entry in entries:
            try:
                checkpoint = Checkpoint(**entry)
            except TypeError:
                log.warning("checkpoint_skipped", path=str(self.path), entry=str(entry)[:200])
                continue
            self._saved[checkpoint.identity] = checkpoint

    def find(self, identity: Identity) -> Checkpoint | None:
        """Return the checkpoint of a file identity."""
        return self._saved.get(identity)

    def has_location(self, location: str) -> bool:
        """Return whether some file was followed at this location before."""
        return any(location in (item.where, item.path) for item in self._saved.values())

    def all(self) -> list[Checkpoint]:
        """Return every saved checkpoint, oldest first."""
        return list(self._saved.values())

    def save(
        self, checkpoints: list[Checkpoint], *, audit_position: AuditPosition | None = None
    ) -> None:
        """Merge these checkpoints in and write the file; raise `OSError` if it fails.

        Memory changes only after the write succeeded, so a failed save (a full disk) is
        written again by the next call instead of being taken as done.
        """
        merged = OrderedDict(self._saved)
        for checkpoint in checkpoints:
            merged.pop(checkpoint.identity, None)
            merged[checkpoint.identity] = checkpoint
        while len(merged) > max(MAX_SAVED, len(checkpoints)):
            merged.popitem(last=False)
        if merged == self._saved and audit_position == self.audit_position:
            return
        position = audit_position or self.audit_position
        document = {
            "version": FORMAT_VERSION,
            "audit_position": {"inode": position[0], "size": position[1]} if position else None,
            "checkpoints": [asdict(item) for item in merged.values()],
        }
        write_json_atomic(self.path, document)
        self._saved = merged
        self.audit_position = position
