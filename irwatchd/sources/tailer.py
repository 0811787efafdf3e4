"""Follow every file the sources name, through rotation, truncation and restarts.

`poll` is the only place that reads. It is called when watchdog reports a change and on a
timer, because events are hints: they can be coalesced, dropped, or never come at all. Each
call stats every known path, so a missed event delays a line by at most one poll interval and
never loses it.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import structlog

from irwatchd.sources.checkpoints import Checkpoint, CheckpointStore
from irwatchd.sources.followed import FollowedFile, head_sha256
from irwatchd.sources.lines import RawLine

log = structlog.get_logger(__name__)

SKIPPED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4", ".7z")
"""Compressed rotated files are left alone: their lines were read before compression."""

RETIRED_GRACE_SECONDS = 5.0
"""How long a rotated-away file is still read, for lines its writer adds after the rename."""

_BINARY_MAGIC = (b"\x1f\x8b", b"\x7fELF", b"PK\x03\x04", b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd")


@dataclass(frozen=True, slots=True)
class WatchSpec:
    """A configured path (file, directory or glob) with its group and source type."""

    path: str
    group: str
    source_type: str


@dataclass(frozen=True, slots=True)
class LineBatch:
    """Complete lines read from one file in one poll."""

    file: FollowedFile
    lines: list[RawLine]


def is_binary(path: str) -> bool:
    """Guess whether a file is binary from its first 4 KiB: known magic, or mostly non-text."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    if head.startswith(_BINARY_MAGIC):
        return True
    if not head:
        return False
    control = sum(1 for byte in head if byte < 9 or 13 < byte < 32)
    return control / len(head) > 0.3


class Tailer:
    """Discovers the files of the watch specs and reads their new complete lines."""

    def __init__(
        self,
        specs: Iterable[WatchSpec],
        checkpoints: CheckpointStore,
        *,
        start_at: str = "end",
        max_line_bytes: int = 65536,
    ) -> None:
        self.specs = list(specs)
        self.checkpoints = checkpoints
        self.start_at = start_at
        self.max_line_bytes = max_line_bytes
        self.files: dict[str, FollowedFile] = {}
        self.retired: list[tuple[float, FollowedFile]] = []
        self._warned: set[tuple[str, str]] = set()
        self._started = False

    def directories(self) -> list[str]:
        """Return the existing directories that must be watched for the specs."""
        folders = set()
        for spec in self.specs:
            if os.path.isdir(spec.path):
                folders.add(spec.path)
            else:
                parent = os.path.dirname(spec.path) or "."
                if glob.has_magic(parent):
                    folders.update(found for found in glob.glob(parent) if os.path.isdir(found))
                elif os.path.isdir(parent):
                    folders.add(parent)
        return sorted(os.path.realpath(folder) for folder in folders)

    def _warn_once(self, kind: str, path: str, **details: object) -> None:
        if (kind, path) not in self._warned:
            self._warned.add((kind, path))
            log.warning(kind, path=path, **details)

    def _discover(self) -> list[tuple[str, WatchSpec]]:
        found: list[tuple[str, WatchSpec]] = []
        for spec in self.specs:
            if os.path.isdir(spec.path):
                candidates = [os.path.join(spec.path, name) for name in sorted(os.listdir(spec.path))]
            elif glob.has_magic(spec.path):
                candidates = sorted(glob.glob(spec.path))
            else:
                candidates = [spec.path]
                if not os.path.lexists(spec.path):
                    parent = os.path.dirname(spec.path) or "."
                    if not os.path.isdir(parent):
                        self._warn_once(
                            "source_directory_missing", parent,
                            hint="create it or fix the source path; it is checked again each poll",
                        )  # fmt: skip
            for candidate in candidates:
                if candidate.endswith(SKIPPED_SUFFIXES):
                    continue
                found.append((candidate, spec))
        return found

    def _open(self, path: str, spec: WatchSpec, offset_rule: str) -> FollowedFile | None:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return None
        except PermissionError:
            self._warn_once("source_unreadable", path, hint="irwatchd needs read permission on it "
                            "(the adm group on Debian); it is retried each poll")  # fmt: skip
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        if is_binary(path):
            self._warn_once("source_binary_skipped", path, hint="binary files are not read")
            return None
        try:
            handle = open(path, "rb")  # noqa: SIM115 - kept open while the file is followed
        except PermissionError:
            self._warn_once("source_unreadable", path, hint="irwatchd needs read permission on it "
                            "(the adm group on Debian); it is retried each poll")  # fmt: skip
            return None
        except OSError as error:
            if error.errno != errno.ENOENT:
                self._warn_once("source_open_failed", path, error=str(error))
            return None
        info = os.fstat(handle.fileno())
        head, head_size = head_sha256(handle)
        offset, line_number = self._start_offset(path, info, handle, offset_rule)
        self._warned.discard(("source_unreadable", path))
        followed = FollowedFile(
            path=path, group=spec.group, source_type=spec.source_type, handle=handle,
            device=info.st_dev, inode=info.st_ino, head=head, head_size=head_size, offset=offset,
            line_number=line_number, max_line_bytes=self.max_line_bytes,
        )  # fmt: skip
        log.info("file_followed", path=path, offset=offset, inode=info.st_ino, group=spec.group)
        return followed

    def _start_offset(
        self, path: str, info: os.stat_result, handle: BinaryIO, offset_rule: str
    ) -> tuple[int, int | None]:
        saved = self.checkpoints.get(path)
        if saved is not None and (saved.device, saved.inode) == (info.st_dev, info.st_ino):
            head, _ = head_sha256(handle, saved.head_size)
            if head == saved.head_sha256 and saved.offset <= info.st_size:
                return saved.offset, saved.line_number
        if offset_rule == "end" and saved is None:
            return info.st_size, None
        return 0, 0

    def _is_followed_identity(self, info: os.stat_result) -> bool:
        identity = (info.st_dev, info.st_ino)
        followed = [*self.files.values(), *(item for _, item in self.retired)]
        return any((item.device, item.inode) == identity for item in followed)

    def poll(self) -> list[LineBatch]:
        """Check every file for rotation, truncation and new lines; return what was read."""
        offset_rule = self.start_at if not self._started else "beginning"
        if not self._started:
            self._resume_rotated_while_down()
        batches: list[LineBatch] = []
        for path, spec in self._discover():
            followed = self.files.get(path)
            if followed is None:
                try:
                    info = os.stat(path)
                except OSError:
                    info = None
                if info is not None and self._is_followed_identity(info):
                    continue  # a rotated name of a file already followed
                followed = self._open(path, spec, offset_rule)
                if followed is None:
                    continue
                self.files[path] = followed
            else:
                self._check_identity(followed)
                if path not in self.files:
                    # Rotated away: the file now at this path is new, so read it from byte 0.
                    followed = self._open(path, spec, "beginning")
                    if followed is None:
                        continue
                    self.files[path] = followed
            batches.extend(self._read_all(followed))
        self._started = True
        self._drain_retired(batches)
        return batches

    def _check_identity(self, followed: FollowedFile) -> None:
        try:
            info = os.stat(followed.path)
        except FileNotFoundError:
            info = None
        if info is None or (info.st_dev, info.st_ino) != (followed.device, followed.inode):
            # Renamed or deleted: read the old file to its end for a while, then the new one from 0.
            log.info("file_rotated", path=followed.path, inode=followed.inode)
            self.retired.append((time.monotonic(), followed))
            del self.files[followed.path]
            return
        if info.st_size < followed.offset:
            log.info("file_truncated", path=followed.path, size=info.st_size, offset=followed.offset)
            self._restart(followed)
            return
        if followed.is_replaced():
            # Same inode, different first bytes: the file was replaced in place.
            log.info("file_replaced", path=followed.path, inode=followed.inode)
            self._restart(followed)

    def _restart(self, followed: FollowedFile) -> None:
        followed.offset = 0
        followed.read_position = 0
        followed.line_number = 0
        followed.pending.clear()
        followed.skipping = 0
        followed.handle.seek(0)
        followed.head, followed.head_size = head_sha256(followed.handle)

    def _read_all(self, followed: FollowedFile) -> list[LineBatch]:
        batches = []
        while True:
            lines = followed.read_lines()
            followed.refresh_head()
            if lines:
                batches.append(LineBatch(followed, lines))
            if followed.read_position >= os.fstat(followed.handle.fileno()).st_size:
                return batches
            if not lines and len(followed.pending) == 0 and followed.skipping == 0:
                return batches

    def _drain_retired(self, batches: list[LineBatch]) -> None:
        now = time.monotonic()
        keep = []
        for since, followed in self.retired:
            batches.extend(self._read_all(followed))
            if now - since < RETIRED_GRACE_SECONDS:
                keep.append((since, followed))
                continue
            if followed.pending:
                log.warning("partial_line_dropped", path=followed.path, inode=followed.inode,
                            bytes=len(followed.pending))  # fmt: skip
            followed.close()
        self.retired = keep

    def _resume_rotated_while_down(self) -> None:
        """Find files rotated while the daemon was down, by identity, and queue their unread tail."""
        for saved in self.checkpoints.all():
            try:
                info = os.stat(saved.path)
            except OSError:
                info = None
            if info is not None and (info.st_dev, info.st_ino) == (saved.device, saved.inode):
                continue
            renamed = self._find_renamed(saved)
            if renamed is None:
                continue
            spec = WatchSpec(renamed, "rotated", "auto")
            for candidate in self.specs:
                if candidate.path in (saved.path, os.path.dirname(saved.path)) or fnmatch.fnmatch(
                    saved.path, candidate.path
                ):
                    spec = WatchSpec(renamed, candidate.group, candidate.source_type)
            handle = open(renamed, "rb")  # noqa: SIM115
            followed = FollowedFile(
                path=renamed, group=spec.group, source_type=spec.source_type, handle=handle,
                device=saved.device, inode=saved.inode, head=saved.head_sha256,
                head_size=saved.head_size, offset=saved.offset, line_number=saved.line_number,
                max_line_bytes=self.max_line_bytes,
            )  # fmt: skip
            log.info("file_rotated_while_stopped", path=saved.path, renamed_to=renamed,
                     offset=saved.offset)  # fmt: skip
            self.retired.append((time.monotonic(), followed))

    @staticmethod
    def _find_renamed(saved: Checkpoint) -> str | None:
        folder = os.path.dirname(saved.path) or "."
        try:
            names = os.listdir(folder)
        except OSError:
            return None
        for name in names:
            candidate = os.path.join(folder, name)
            try:
                info = os.stat(candidate)
            except OSError:
                continue
            if (info.st_dev, info.st_ino) == (saved.device, saved.inode) and info.st_size >= saved.offset:
                return candidate
        return None

    def checkpoints_now(self) -> list[Checkpoint]:
        """Return checkpoints for every followed file at its last handed-out line."""
        return [
            Checkpoint(
                path=item.path, device=item.device, inode=item.inode, head_sha256=item.head,
                head_size=item.head_size, offset=item.offset, line_number=item.line_number,
            )  # fmt: skip
            for item in self.files.values()
        ]

    def close(self) -> None:
        """Close every open file."""
        for followed in self.files.values():
            followed.close()
        for _, followed in self.retired:
            followed.close()
        self.files.clear()
        self.retired.clear()


def specs_from_paths(paths: Iterable[tuple[str, str, str]]) -> list[WatchSpec]:
    """Build watch specs from (path, group, source type) triples, with paths made absolute."""
    return [WatchSpec(str(Path(path).expanduser().absolute()), group, kind) for path, group, kind in paths]
