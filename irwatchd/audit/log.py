"""The audit log writer: one JSON line per record, each carrying the SHA-256 of the line before.

Field names follow the Elastic Common Schema where one exists (`@timestamp`, `event.*`,
`source.ip`, `user.name`, `rule.id`, `log.file.path`), so Filebeat or Vector can ship the file
as it is. The chain fields live under `irwatchd.audit`: `seq` counts from 1 and `prev_sha256`
is the SHA-256 of the previous line's bytes without its newline (64 zeros for the first line).

Past `max_bytes` the log rotates: `audit.jsonl.N` becomes `.N+1` (the oldest beyond
`keep_files` is deleted), `audit.jsonl` becomes `audit.jsonl.1`, and a new `audit.jsonl`
starts whose first record carries on the sequence and chains to the last record of `.1`.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from irwatchd.jsonfiles import match_owner, open_lock_file
from irwatchd.logger import get_logger
from irwatchd.parsing.timestamps import format_rfc3339

log = get_logger(__name__)

GENESIS = "0" * 64
_ENCODER = msgspec.json.Encoder()
"""msgspec writes a record as UTF-8 JSON without spaces, the bytes `json.dumps(record,
ensure_ascii=False, separators=(",", ":"))` gives for strings, integers, lists and dicts, in
about 1.3 µs for a finding record against 6.4 µs with `json` (msgspec 0.23, Python 3.11). Keys
that are not strings become strings, as with `json`. Floats may differ in form (`1e16` where
`json` writes `1e+16`), which the chain does not care about: it hashes the bytes as written."""


def _encode(record: dict[str, Any]) -> bytes:
    """Encode a record; a string with a lone surrogate is written with the bytes escaped.

    Python decodes an undecodable file name to lone surrogates (`auth\udcff.log` for the
    byte 0xff), which UTF-8 cannot hold. Such a name is written as `auth\\xff.log`.
    """
    try:
        return _ENCODER.encode(record)
    except UnicodeEncodeError:
        return _ENCODER.encode(_escaped(record))


def _escaped(value: Any) -> Any:
    """Return `value` with each string's lone surrogates written as backslash escapes."""
    if isinstance(value, str):
        try:
            raw = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = value.encode("utf-8", "surrogatepass")
        return raw.decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {_escaped(key): _escaped(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_escaped(item) for item in value]
    return value


SEVERITY_NUMBER = {"low": 1, "medium": 2, "high": 3, "critical": 4}


def _last_line(path: Path) -> bytes | None:
    """Return the last complete line of a file, without its newline, or None if it has none."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            position = size
            tail = b""
            while position > 0:
                step = min(65536, position)
                position -= step
                handle.seek(position)
                tail = handle.read(step) + tail
                body = tail[:-1] if tail.endswith(b"\n") else tail
                newline = body.rfind(b"\n")
                if newline >= 0:
                    return body[newline + 1 :]
            body = tail[:-1] if tail.endswith(b"\n") else tail
            return body or None
    except FileNotFoundError:
        return None


def _drop_partial_tail(path: Path) -> None:
    """Cut off a last line that has no newline: a write that a crash or kill interrupted.

    Such a record was never whole, so it was never synced as part of a batch and the lines it
    came from are read again after the restart. Keeping it would put an unreadable line into
    the chain and make the next record continue from a hash of half a record.
    """
    try:
        handle = path.open("r+b")
    except FileNotFoundError:
        return
    with handle:
        size = handle.seek(0, os.SEEK_END)
        position = size
        while position > 0:
            step = min(65536, position)
            position -= step
            handle.seek(position)
            newline = handle.read(step).rfind(b"\n")
            if newline >= 0:
                keep = position + newline + 1
                break
        else:
            keep = 0
        if keep == size:
            return
        handle.truncate(keep)
        os.fsync(handle.fileno())
    log.warning(
        "audit_partial_record_dropped",
        path=str(path),
        bytes=size - keep,
        offset=keep,
        reason="the last record has no newline; a write was cut off by a crash or kill",
    )


def _chain_head(path: Path) -> tuple[int, str]:
    """Return the last sequence number and the hash the next record must carry as prev_sha256."""
    last = _last_line(path)
    if last is None:
        # Rotated just before a stop: the chain goes on from the newest rotated file.
        last = _last_line(rotated_path(path, 1))
    if last is None:
        return 0, GENESIS
    try:
        seq = int(json.loads(last)["irwatchd"]["audit"]["seq"])
    except (ValueError, KeyError, TypeError):
        log.warning(
            "audit_tail_unreadable",
            path=str(path),
            hint="run `irwatchd audit verify` to find the damaged record",
        )
        seq = 0
    return seq, hashlib.sha256(last).hexdigest()


def _open_for_append(path: Path) -> BinaryIO:
    """Open the log for appending; a file created as root gets its folder's owner."""
    handle = path.open("ab", buffering=0)
    match_owner(handle.fileno(), path.parent)
    return handle


class AuditLog:
    """A writer of the audit log; thread-safe, one `write` per record.

    Processes that append to the same log (the daemon, `irwatchd incidents ack`) take an
    `flock` on `audit.jsonl.lock` for each record and continue the chain from the file's
    last line when another process wrote since, so the chain stays one chain.

    Each record is written and flushed before `append` returns, and fsynced by `sync`, which
    the pipeline calls once per batch before it moves its file checkpoints forward.
    """

    def __init__(self, path: Path, max_bytes: int | None = None, keep_files: int = 10) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep_files = keep_files
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.lock_path = path.with_name(path.name + ".lock")
        with self._file_lock():
            _drop_partial_tail(path)
            self._seq, self._prev = _chain_head(path)
        self._handle = _open_for_append(path)
        self._size = self._handle.tell()
        self._dirty = False
        # Records of the last `append_many` call that were written, also after it failed.
        self.written_count = 0

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Add the chain fields and timestamp to `record`, write it as one line, and return it."""
        return self.append_many([record])[0]

    def append_many(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Append records in order, as `append` does, with one lock and one write per piece.

        The records are written in pieces of at most `max_bytes` (so rotation happens between
        pieces). A failed write leaves the records of the earlier pieces written and raises;
        `written_count` then says how many of `records` were written.
        """
        written: list[dict[str, Any]] = []
        self.written_count = 0
        if not records:
            return written
        with self._lock, self._file_lock():
            self._catch_up()
            stamp = format_rfc3339(datetime.now(UTC))
            lines: list[bytes] = []
            piece_bytes = 0
            seq, prev = self._seq, self._prev
            for record in records:
                seq += 1
                record.setdefault("@timestamp", stamp)
                record.setdefault("irwatchd", {})["audit"] = {"seq": seq, "prev_sha256": prev}
                line = _encode(record)
                prev = hashlib.sha256(line).hexdigest()
                lines.append(line)
                piece_bytes += len(line) + 1
                if self.max_bytes is not None and self._size + piece_bytes >= self.max_bytes:
                    self._write_piece(lines, seq, prev)
                    written.extend(records[len(written) : len(written) + len(lines)])
                    self.written_count = len(written)
                    lines, piece_bytes = [], 0
            if lines:
                self._write_piece(lines, seq, prev)
                written.extend(records[len(written) :])
                self.written_count = len(written)
        return written

    def _write_piece(self, lines: list[bytes], seq: int, prev: str) -> None:
        """Write whole lines that end at chain position (seq, prev); rotate when full."""
        self._write_whole(b"\n".join(lines) + b"\n")
        self._seq, self._prev = seq, prev
        self._size = self._handle.tell()
        self._dirty = True
        if self.max_bytes is not None and self._size >= self.max_bytes:
            self._rotate()

    def _write_whole(self, data: bytes) -> None:
        """Write all of `data` or, when a write fails (a full disk), none of it, and raise."""
        view = memoryview(data)
        try:
            while view:
                written = self._handle.write(view) or 0
                if written == 0:
                    raise OSError(errno.EIO, "write returned 0 bytes", str(self.path))
                view = view[written:]
        except OSError:
            # Cut off the part of the record that made it, so the file still ends with a
            # whole line and the next record continues the chain from the last one.
            os.ftruncate(self._handle.fileno(), self._size)
            raise

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Hold `audit.jsonl.lock`, which every process that appends to this log takes."""
        descriptor = open_lock_file(self.lock_path)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)

    def _catch_up(self) -> None:
        """Continue the chain from records another process (the CLI) appended or rotated in."""
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            on_disk = None
        current = os.fstat(self._handle.fileno())
        if (
            on_disk is not None
            and on_disk.st_ino == current.st_ino
            and on_disk.st_size == self._size
        ):
            return
        if on_disk is None or on_disk.st_ino != current.st_ino:
            self._handle.close()
            self._handle = _open_for_append(self.path)
        self._size = self._handle.seek(0, os.SEEK_END)
        self._seq, self._prev = _chain_head(self.path)

    def configure_rotation(self, max_bytes: int, keep_files: int) -> None:
        """Set the size past which the log rotates and how many old files are kept."""
        with self._lock:
            self.max_bytes = max_bytes
            self.keep_files = keep_files

    def _rotate(self) -> None:
        """Move the full log aside and start a new file; the caller holds the lock."""
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self._dirty = False
        oldest = rotated_path(self.path, self.keep_files)
        oldest.unlink(missing_ok=True)
        for number in range(self.keep_files - 1, 0, -1):
            source = rotated_path(self.path, number)
            if source.exists():
                os.replace(source, rotated_path(self.path, number + 1))
        os.replace(self.path, rotated_path(self.path, 1))
        self._handle = _open_for_append(self.path)
        self._size = 0
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        log.info("audit_rotated", path=str(self.path), seq=self._seq, keep_files=self.keep_files)

    def sync(self) -> None:
        """fsync what was written since the last call."""
        with self._lock:
            if self._dirty:
                os.fsync(self._handle.fileno())
                self._dirty = False

    def close(self) -> None:
        """Sync and close the file."""
        self.sync()
        with self._lock:
            self._handle.close()


def rotated_path(path: Path, number: int) -> Path:
    """Return the name of the `number`-th rotated file: `audit.jsonl.1` is the newest."""
    return path.with_name(f"{path.name}.{number}")


def chain_files(path: Path) -> list[Path]:
    """Return the rotated files and the live log, oldest first, as one chain."""
    numbered = []
    for candidate in path.parent.glob(f"{path.name}.*"):
        suffix = candidate.name[len(path.name) + 1 :]
        if suffix.isdigit():
            numbered.append((int(suffix), candidate))
    files = [candidate for _, candidate in sorted(numbered, reverse=True)]
    if path.exists():
        files.append(path)
    return files


def recent_dedup_keys(path: Path, max_bytes: int = 32 << 20) -> set[str]:
    """Return the finding dedup keys in the last `max_bytes` of an audit log.

    After a crash, lines since the last checkpoint are read again; these keys let the
    responder recognise their findings and skip them instead of auditing them twice.
    """
    keys: set[str] = set()
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            if size > max_bytes:
                handle.readline()  # drop the first, probably partial, line
            for line in handle:
                if b'"dedup_key"' not in line:
                    continue
                try:
                    keys.add(json.loads(line)["irwatchd"]["dedup_key"])
                except (ValueError, KeyError, TypeError):
                    continue
    except FileNotFoundError:
        pass
    return keys
