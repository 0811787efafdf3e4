"""Find a followed file's other names: where it was renamed to, and copies made of it.

Rotation tools rename or copy a log inside its own folder (or, for a symlinked log, the
folder of the link target), so only those folders are searched.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator

from irwatchd.sources.checkpoints import Identity

COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4", ".7z")
"""Compressed rotated files are left alone: their lines were read before compression."""


def sibling_folders(*locations: str) -> list[str]:
    """Return the folders of these paths and of their symlink targets, without repeats."""
    folders: list[str] = []
    for location in locations:
        for candidate in (location, os.path.realpath(location)):
            folder = os.path.dirname(candidate) or "."
            if folder not in folders:
                folders.append(folder)
    return folders


def head_matches(path: str, head_sha256: str, head_size: int) -> bool:
    """Return whether the first `head_size` bytes of a file hash to `head_sha256`."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(head_size)
    except OSError:
        return False
    return len(head) == head_size and hashlib.sha256(head).hexdigest() == head_sha256


def _regular_files(folders: list[str]) -> Iterator[tuple[str, os.stat_result]]:
    for folder in folders:
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            if name.endswith(COMPRESSED_SUFFIXES):
                continue
            path = os.path.join(folder, name)
            try:
                info = os.stat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                yield path, info


def find_renamed(
    folders: list[str], identity: Identity, head_sha256: str, head_size: int
) -> tuple[str, int] | None:
    """Find the file with this identity and head among the folders; return its path and size."""
    for path, info in _regular_files(folders):
        if (info.st_dev, info.st_ino) == identity and head_matches(path, head_sha256, head_size):
            return path, info.st_size
    return None


def find_copy(
    folders: list[str], head_sha256: str, head_size: int, min_size: int, exclude: set[Identity]
) -> str | None:
    """Find a copy of a file (copytruncate): another file that starts with the same bytes.

    Only a copy longer than `min_size` is returned, since only then does it contain lines
    not read yet. Among several, the most recently modified wins.

    NOTE: a copy compressed at once (copytruncate without delaycompress) or moved to another
    folder (logrotate's olddir) is not found; the lines only it contains are lost.
    """
    found: list[tuple[float, str]] = []
    for path, info in _regular_files(folders):
        if (info.st_dev, info.st_ino) in exclude or info.st_size <= min_size:
            continue
        if head_matches(path, head_sha256, head_size):
            found.append((info.st_mtime, path))
    return max(found)[1] if found else None
