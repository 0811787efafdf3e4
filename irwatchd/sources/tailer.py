"""Follow every file the sources name, through rotation, truncation, restarts and crashes.

`poll` is the only place that reads. It is called when watchdog reports a change and on a
timer, because events are hints: they can be coalesced, dropped, or never come at all. Each
call stats every known path, so a missed event delays a line by at most one poll interval and
never loses it. Each call reads at most `READ_CHUNK` bytes per file, so a burst is handed to
the pipeline piece by piece and reading waits while the pipeline works.

Order of reading within a log's life: a rotated-away or copied file is read to its end
before the file that replaced it is read from byte 0, and late writes to it still count
until it has been quiet for `RETIRED_GRACE_SECONDS`.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import BinaryIO

from irwatchd.logger import get_logger
from irwatchd.sources.checkpoints import Checkpoint, CheckpointStore, Identity
from irwatchd.sources.discovery import (
    UNREADABLE_HINT,
    WarnOnce,
    WatchSpec,
    discover,
    is_binary,
    specs_from_paths,
    watched_directories,
)
from irwatchd.sources.followed import HEAD_BYTES, FollowedFile, head_sha256
from irwatchd.sources.lines import LineBlock, RawLine
from irwatchd.sources.siblings import (
    COMPRESSED_SUFFIXES,
    find_copy,
    find_renamed,
    sibling_folders,
)

log = get_logger(__name__)

__all__ = ["SKIPPED_SUFFIXES", "LineBatch", "Tailer", "WatchSpec", "is_binary", "specs_from_paths"]

SKIPPED_SUFFIXES = COMPRESSED_SUFFIXES

RETIRED_GRACE_SECONDS = 5.0
"""How long a rotated-away file must stay quiet before it is closed.

NOTE: a write to a rotated file after it was closed is read only if a watch spec names the
file's new path, such as a watched folder. Otherwise a writer that keeps writing to the old
file after this time loses those lines.
"""


@dataclass(frozen=True, slots=True)
class LineBatch:
    """Complete lines read from one file in one poll: `RawLine`s, or one block of bytes."""

    file: FollowedFile
    raw_lines: list[RawLine] = field(default_factory=list)
    block: LineBlock | None = None

    @property
    def lines(self) -> list[RawLine]:
        """The lines as `RawLine`s, decoded from `block` when the batch is one."""
        return self.raw_lines if self.block is None else self.block.lines()

    @property
    def count(self) -> int:
        """Number of lines."""
        return len(self.raw_lines) if self.block is None else self.block.count

    @property
    def size(self) -> int:
        """Number of bytes the lines take in the file, newlines and cut parts included."""
        if self.block is not None:
            return len(self.block.data)
        return sum(line.size for line in self.raw_lines)


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
        """Followed files by location."""
        self.retired: list[FollowedFile] = []
        """Rotated-away files and copies being read to their end."""
        self._waiting: dict[str, FollowedFile] = {}
        """Locations whose file waits until the retired file it replaced is read to its end."""
        self._start_sizes: dict[str, tuple[Identity, int]] = {}
        """Sizes at start of files that could not be opened then; `start_at: end` starts there."""
        self._warnings = WarnOnce()
        self._started = False

    def set_specs(self, specs: Iterable[WatchSpec]) -> None:
        """Take the watch specs of a reload, and stop following the files none of them names.

        Call it between polls, once the lines read so far are checkpointed. The specs name
        what discovery finds, so a glob names no file in a subfolder. A file that comes back
        into a spec later resumes from its checkpoint, also when it was rotated meanwhile, as
        at start. A rotated-away file still being read to its end is finished as usual, and so
        is a followed file deleted just now. A file whose spec changed its group or source
        type takes the new ones from its next read on.
        """
        self.specs = list(specs)
        discovered = discover(self.specs, self._warnings)
        for location, followed in list(self.files.items()):
            spec = discovered.get(location)
            if spec is not None:
                followed.group, followed.source_type = spec.group, spec.source_type
            elif os.path.lexists(location):
                log.info("file_unwatched", path=followed.path, location=location,
                         inode=followed.inode, offset=followed.offset)  # fmt: skip
                del self.files[location]
                self._waiting.pop(location, None)
                followed.close()
        for event in ("source_unreadable", "source_directory_unreadable"):
            for path in self._warnings.paths(event):
                if path not in discovered and all(spec.path != path for spec in self.specs):
                    self._warnings.clear(event, path)
        if self._started:
            named_again = {location for location in discovered if location not in self.files}
            self._resume_moved_while_stopped(discovered, only=named_again)

    def unreadable(self) -> list[str]:
        """Return the watched files and folders that could not be read, as of the last poll."""
        return sorted(
            {*self._warnings.paths("source_unreadable"),
             *self._warnings.paths("source_directory_unreadable")}
        )  # fmt: skip

    def directories(self) -> list[str]:
        """Return the existing directories that must be watched for the specs."""
        return watched_directories(self.specs)

    # Polling

    def poll(self) -> list[LineBatch]:
        """Check every file for rotation, truncation and new lines; return what was read.

        At most `READ_CHUNK` bytes are read per file, so call again while it returns lines.
        """
        discovered = discover(self.specs, self._warnings)
        if not self._started:
            self._resume_moved_while_stopped(discovered)
        batches: list[LineBatch] = []
        self._read_retired(batches)
        # Files no spec lists any more (deleted from a glob's folder) are still checked.
        locations: list[tuple[str, WatchSpec | None]] = list(discovered.items())
        locations += [(location, None) for location in self.files if location not in discovered]
        for location, spec in locations:
            followed = self.files.get(location)
            if followed is not None and not self._check_identity(followed):
                followed = None  # rotated away
            if followed is None and spec is not None:
                # Opened at once, so a second rotation cannot take it away unseen, but read
                # only once the file it replaced is read to its end.
                followed = self._open(location, spec)
                if followed is not None:
                    self.files[location] = followed
            if followed is not None and location not in self._waiting:
                self._read(followed, batches)
        self._started = True
        return batches

    def _read(self, followed: FollowedFile, batches: list[LineBatch]) -> bool:
        """Read new lines of `followed` into `batches`; return whether there were any."""
        lines = followed.read_block()
        if isinstance(lines, LineBlock):
            batches.append(LineBatch(followed, block=lines))
        elif lines:
            batches.append(LineBatch(followed, lines))
        return bool(lines)

    def _read_retired(self, batches: list[LineBatch]) -> None:
        for followed in list(self.retired):
            lines = self._read(followed, batches)
            if followed.at_end():
                self._release(followed)
            if lines or time.monotonic() - followed.last_growth < RETIRED_GRACE_SECONDS:
                continue
            partial = followed.flush_partial()
            if partial is not None:
                # The writer moved on, so this line will not be completed; it is closed on a
                # later poll, once the line is recorded.
                batches.append(LineBatch(followed, [partial]))
                continue
            self._finish(followed)

    def _finish(self, followed: FollowedFile) -> None:
        log.info("file_finished", path=followed.path, location=followed.location,
                 inode=followed.inode, offset=followed.offset)  # fmt: skip
        self.retired.remove(followed)
        self._release(followed)
        followed.close()

    def _release(self, followed: FollowedFile) -> None:
        """Let the file that waits for `followed` be read."""
        for location, predecessor in list(self._waiting.items()):
            if predecessor is followed:
                del self._waiting[location]

    def _retire(self, followed: FollowedFile, location: str) -> None:
        followed.last_growth = time.monotonic()
        self.retired.append(followed)
        self._waiting[location] = followed

    def _check_identity(self, followed: FollowedFile) -> bool:
        """Return whether `followed` is still the file at its location, handling truncation."""
        location = followed.location
        try:
            info = os.stat(location)
        except OSError:
            info = None
        if info is None or (info.st_dev, info.st_ino) != followed.identity:
            # Renamed or deleted: read the old file to its end, then the new one from 0.
            log.info("file_rotated", path=followed.path, location=location, inode=followed.inode,
                     offset=followed.offset, new_file=info is not None)  # fmt: skip
            del self.files[location]
            self._retire(followed, location)
            return False
        if info.st_size < followed.read_position:
            log.info("file_truncated", path=followed.path, location=location,
                     size=info.st_size, offset=followed.offset)  # fmt: skip
            self._restart_after_copy(followed)
        elif followed.is_replaced():
            log.info("file_replaced", path=followed.path, location=location,
                     inode=followed.inode, offset=followed.offset)  # fmt: skip
            self._restart_after_copy(followed)
        return True

    def _restart_after_copy(self, followed: FollowedFile) -> None:
        """Read the lines a copytruncate moved into the copy, then the file again from 0."""
        copy = self._open_copy(
            followed.checkpoint(), followed.group, followed.source_type, followed.identity
        )
        followed.restart()
        if copy is not None:
            self._waiting[followed.location] = copy

    def _open_copy(
        self, saved: Checkpoint, group: str, source_type: str, original: Identity
    ) -> FollowedFile | None:
        if saved.head_size < HEAD_BYTES:
            # NOTE: a file shorter than 64 bytes has too short a head to tell its copy apart.
            return None
        folders = sibling_folders(saved.where)
        path = find_copy(folders, saved.head_sha256, saved.head_size, saved.offset,
                         self._followed_identities() | {original})  # fmt: skip
        if path is None:
            return None
        copy = self._follow(path, saved, group, source_type)
        if copy is not None:
            log.info("file_copy_found", path=saved.path, copy=path, offset=saved.offset)
            self.retired.append(copy)
        return copy

    # Opening

    def _followed_identities(self) -> set[Identity]:
        return {item.identity for item in [*self.files.values(), *self.retired]}

    def _follow(
        self, location: str, saved: Checkpoint, group: str, source_type: str
    ) -> FollowedFile | None:
        """Open a file and follow it from a checkpoint, under the checkpoint's path."""
        try:
            handle = open(location, "rb")  # noqa: SIM115 - kept open while the file is followed
        except OSError as error:
            self._warnings.warn("source_open_failed", location, error=str(error),
                                hint=UNREADABLE_HINT)  # fmt: skip
            return None
        info = os.fstat(handle.fileno())
        head, head_size = head_sha256(handle)
        return FollowedFile(
            path=saved.path, location=location, group=group, source_type=source_type,
            handle=handle, device=info.st_dev, inode=info.st_ino, head=head, head_size=head_size,
            offset=min(saved.offset, info.st_size), line_number=saved.line_number,
            max_line_bytes=self.max_line_bytes,
        )  # fmt: skip

    def _unreadable(self, location: str, error: OSError) -> None:
        details: dict[str, object] = {"error": str(error), "daemon_uid": os.geteuid()}
        try:
            info = os.stat(location)
        except OSError:
            info = None
        if info is not None:
            details |= {"mode": oct(stat.S_IMODE(info.st_mode)), "owner_uid": info.st_uid,
                        "owner_gid": info.st_gid}  # fmt: skip
            if not self._started and self.start_at == "end":
                self._start_sizes[location] = ((info.st_dev, info.st_ino), info.st_size)
        self._warnings.warn("source_unreadable", location, hint=UNREADABLE_HINT, **details)

    def _open(self, location: str, spec: WatchSpec) -> FollowedFile | None:
        try:
            info = os.stat(location)
        except FileNotFoundError:
            self._warnings.clear("source_unreadable", location)  # deleted while unreadable
            return None
        except OSError as error:
            self._unreadable(location, error)
            return None
        identity = (info.st_dev, info.st_ino)
        if not stat.S_ISREG(info.st_mode) or identity in self._followed_identities():
            return None  # not a log file, or another name of a file already followed
        try:
            handle = open(location, "rb")  # noqa: SIM115 - kept open while the file is followed
        except FileNotFoundError:
            return None
        except OSError as error:
            self._unreadable(location, error)
            return None
        try:
            followed = self._start(location, spec, handle, info)
        except BaseException:
            handle.close()
            raise
        if followed is None:
            handle.close()
            return None
        self._warnings.clear("source_unreadable", location)
        self._warnings.clear("source_binary_skipped", location)
        log.info("file_followed", path=followed.path, location=location, offset=followed.offset,
                 inode=followed.inode, group=spec.group)  # fmt: skip
        return followed

    def _start(
        self, location: str, spec: WatchSpec, handle: BinaryIO, info: os.stat_result
    ) -> FollowedFile | None:
        """Decide where to start reading a newly opened file; None skips it for now."""
        identity = (info.st_dev, info.st_ino)
        head, head_size = head_sha256(handle)
        saved = self.checkpoints.find(identity)
        path, offset = location, 0
        line_number: int | None = 0
        if saved is not None and saved.offset <= info.st_size and self._same_head(handle, saved):
            path, offset, line_number = saved.path, saved.offset, saved.line_number
        elif saved is not None:
            # Truncated or rewritten since the checkpoint, or a new file got its inode number
            # back. A copy, if there is one, contains the lines after the checkpoint.
            log.info("file_changed_since_checkpoint", path=saved.path, location=location,
                     offset=saved.offset, size=info.st_size)  # fmt: skip
            copy = self._open_copy(saved, spec.group, spec.source_type, identity)
            if copy is not None:
                self._waiting[location] = copy
        elif head_size == HEAD_BYTES and any(
            item.head == head and item.head_size == HEAD_BYTES
            for item in [*self.files.values(), *self.retired]
        ):
            # Same first bytes as a followed file: a copy being made (copytruncate). Its
            # lines are read from the original, or from here once the original is truncated.
            # NOTE: so a plain `cp` of a followed log into a watched folder is never read.
            log.debug("file_copy_skipped", location=location)
            return None
        elif is_binary(location):
            self._warnings.warn("source_binary_skipped", location,
                            hint="binary files are not read; watch a narrower glob")  # fmt: skip
            return None
        elif location in self._start_sizes:
            start_identity, start_size = self._start_sizes.pop(location)
            if start_identity == identity and start_size <= info.st_size:
                offset, line_number = start_size, None
        elif (
            not self._started
            and self.start_at == "end"
            and not self.checkpoints.has_location(location)
        ):
            offset, line_number = info.st_size, None
        return FollowedFile(
            path=path, location=location, group=spec.group, source_type=spec.source_type,
            handle=handle, device=info.st_dev, inode=info.st_ino, head=head, head_size=head_size,
            offset=offset, line_number=line_number, max_line_bytes=self.max_line_bytes,
        )  # fmt: skip

    @staticmethod
    def _same_head(handle: BinaryIO, saved: Checkpoint) -> bool:
        head, size = head_sha256(handle, saved.head_size)
        return size == saved.head_size and head == saved.head_sha256

    def _resume_moved_while_stopped(
        self, discovered: dict[str, WatchSpec], only: set[str] | None = None
    ) -> None:
        """Find files rotated away while irwatchd was stopped and queue their unread lines.

        With `only`, look at the checkpoints of those locations alone: the files a reload
        names again, which may have been rotated while no spec named them.
        """
        followed = self._followed_identities()
        for saved in self.checkpoints.all():
            if saved.identity in followed or (only is not None and saved.where not in only):
                continue
            try:
                info = os.stat(saved.where)
            except OSError:
                info = None
            if info is not None and (info.st_dev, info.st_ino) == saved.identity:
                continue  # still where it was; discovery opens it from its checkpoint
            found = find_renamed(sibling_folders(saved.where, saved.path), saved.identity,
                                 saved.head_sha256, saved.head_size)  # fmt: skip
            if found is None or found[0] in discovered or found[1] <= saved.offset:
                continue  # gone, followed under its new name, or nothing left to read
            spec = self._spec_for(saved.path) or discovered.get(saved.where)
            group, source_type = (spec.group, spec.source_type) if spec else ("rotated", "auto")
            resumed = self._follow(found[0], saved, group, source_type)
            if resumed is None:
                continue
            log.info("file_rotated_while_stopped", path=saved.path, location=found[0],
                     offset=saved.offset, size=found[1])  # fmt: skip
            self.retired.append(resumed)
            self._waiting.setdefault(saved.where, resumed)
            followed.add(resumed.identity)

    def _spec_for(self, path: str) -> WatchSpec | None:
        for spec in self.specs:
            in_folder = os.path.dirname(path) == spec.path
            if spec.path == path or in_folder or fnmatch(path, spec.path):
                return spec
        return None

    # Checkpoints

    def checkpoints_now(self) -> list[Checkpoint]:
        """Mark every line handed out so far as recorded and return the checkpoints there.

        Call it once the findings of those lines are durably in the audit log.
        """
        followed_files = [*self.files.values(), *self.retired]
        for followed in followed_files:
            followed.commit()
        return [followed.checkpoint() for followed in followed_files]

    def rewind(self) -> None:
        """Hand out again every line after the last checkpoints; call when recording failed."""
        for followed in [*self.files.values(), *self.retired]:
            followed.rewind()

    def close(self) -> None:
        """Close every open file."""
        for followed in [*self.files.values(), *self.retired]:
            followed.close()
        self.files.clear()
        self.retired.clear()
        self._waiting.clear()
