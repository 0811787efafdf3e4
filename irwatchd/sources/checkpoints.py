"""Per-file read positions, saved atomically so a restart resumes after the last handled line."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from irwatchd.jsonfiles import read_json, write_json_atomic


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where reading of one file stopped, and how to recognise that file again."""

    path: str
    device: int
    inode: int
    head_sha256: str
    head_size: int
    offset: int
    line_number: int | None


class CheckpointStore:
    """All checkpoints of the state directory, in one JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        raw = read_json(path, {})
        self._saved: dict[str, Checkpoint] = {}
        for key, value in raw.items():
            try:
                self._saved[key] = Checkpoint(**value)
            except TypeError:
                continue  # written by another version; the file is re-read from its start rule

    def get(self, path: str) -> Checkpoint | None:
        """Return the checkpoint saved for a path."""
        return self._saved.get(path)

    def all(self) -> list[Checkpoint]:
        """Return every saved checkpoint."""
        return list(self._saved.values())

    def save(self, checkpoints: list[Checkpoint]) -> None:
        """Replace the saved checkpoints of these paths and write the file if anything changed."""
        changed = False
        for checkpoint in checkpoints:
            if self._saved.get(checkpoint.path) != checkpoint:
                self._saved[checkpoint.path] = checkpoint
                changed = True
        if changed:
            write_json_atomic(self.path, {key: asdict(value) for key, value in self._saved.items()})
