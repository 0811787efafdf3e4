"""Discovery of the files that watch specs name (files, whole directories and globs)."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from irwatchd.logger import get_logger
from irwatchd.sources.siblings import COMPRESSED_SUFFIXES

log = get_logger(__name__)

UNREADABLE_HINT = (
    "irwatchd needs read permission on the file and search (x) permission on each folder "
    "above it: add the daemon's user to the file's group (adm on Debian) or grant it with "
    "`setfacl -m u:USER:r FILE`; the file is tried again every poll"
)

_BINARY_MAGIC = (b"\x1f\x8b", b"\x7fELF", b"PK\x03\x04", b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd")


@dataclass(frozen=True, slots=True)
class WatchSpec:
    """A configured path (file, directory or glob) with its group and source type."""

    path: str
    group: str
    source_type: str


@dataclass
class WarnOnce:
    """Logs each (event, path) warning once, until `clear` reports the problem gone."""

    _warned: set[tuple[str, str]] = field(default_factory=set)

    def warn(self, event: str, path: str, **details: object) -> None:
        """Log the warning unless it was logged for this path already."""
        if (event, path) not in self._warned:
            self._warned.add((event, path))
            log.warning(event, path=path, **details)

    def clear(self, event: str, path: str) -> None:
        """Forget a warning, so the next occurrence is logged again."""
        self._warned.discard((event, path))

    def paths(self, event: str) -> list[str]:
        """Return the paths with a standing warning of `event`, sorted."""
        return sorted(path for warned, path in self._warned if warned == event)


def is_binary(path: str) -> bool:
    """Guess whether a file is binary from its first 4 KiB (see `looks_binary`)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return looks_binary(head)


def looks_binary(head: bytes) -> bool:
    """Guess whether data is binary from its start: known magic, or mostly control bytes."""
    if head.startswith(_BINARY_MAGIC):
        return True
    # A crash or power loss can leave runs of NUL bytes in a text log, where the file system
    # had allocated blocks that were never written, so NULs count as neither text nor binary.
    text = head[:4096].replace(b"\0", b"")
    if not text:
        return False
    control = sum(1 for byte in text if byte < 9 or 13 < byte < 32)
    return control / len(text) > 0.3


def watched_directories(specs: Iterable[WatchSpec]) -> list[str]:
    """Return the existing directories whose changes can concern the specs."""
    folders = set()
    for spec in specs:
        if os.path.isdir(spec.path):
            folders.add(spec.path)
            continue
        parent = os.path.dirname(spec.path) or "."
        if glob.has_magic(parent):
            folders.update(found for found in glob.glob(parent) if os.path.isdir(found))
        elif os.path.isdir(parent):
            folders.add(parent)
        if os.path.islink(spec.path):
            # Writes to a symlinked log change the target's folder, not the link's.
            target_folder = os.path.dirname(os.path.realpath(spec.path))
            if os.path.isdir(target_folder):
                folders.add(target_folder)
    return sorted(os.path.realpath(folder) for folder in folders)


def discover(specs: Iterable[WatchSpec], warnings: WarnOnce) -> dict[str, WatchSpec]:
    """Return every candidate file of the specs with the first spec naming it.

    Compressed files are left out. A named file that does not exist yet is included, so it
    is picked up as soon as it appears.
    """
    found: dict[str, WatchSpec] = {}
    for spec in specs:
        if os.path.isdir(spec.path):
            try:
                names = sorted(os.listdir(spec.path))
                warnings.clear("source_directory_unreadable", spec.path)
            except OSError as error:
                warnings.warn("source_directory_unreadable", spec.path, error=str(error),
                              hint=UNREADABLE_HINT)  # fmt: skip
                continue
            candidates = [os.path.join(spec.path, name) for name in names]
        elif glob.has_magic(spec.path):
            candidates = sorted(glob.glob(spec.path))
        else:
            candidates = [spec.path]
            parent = os.path.dirname(spec.path) or "."
            if not os.path.lexists(spec.path) and not os.path.isdir(parent):
                warnings.warn(
                    "source_directory_missing", parent,
                    hint="create it or fix the source path; it is checked again each poll",
                )  # fmt: skip
        for candidate in candidates:
            if not candidate.endswith(COMPRESSED_SUFFIXES):
                found.setdefault(candidate, spec)
    return found


def specs_from_paths(paths: Iterable[tuple[str, str, str]]) -> list[WatchSpec]:
    """Build watch specs from (path, group, source type) triples, with paths made absolute."""
    return [
        WatchSpec(str(Path(path).expanduser().absolute()), group, kind)
        for path, group, kind in paths
    ]
