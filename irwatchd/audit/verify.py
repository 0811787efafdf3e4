"""Audit chain verification: find the first record that was changed, removed, reordered or cut.

Each line must be complete JSON whose `irwatchd.audit.seq` is one more than the line before
and whose `irwatchd.audit.prev_sha256` is the SHA-256 of the line before. Rotated files are
checked as one chain, oldest first. A changed line shows up as a hash mismatch in the next
record, so the error names the changed line, not the one after it.

The chain cannot show that whole records were removed from the very end of the newest file,
or that the last record was changed, because nothing follows them. Compare the last `seq`
with one kept elsewhere (the `stop` record, a log shipper) to cover that.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from irwatchd.audit.log import GENESIS, chain_files
from irwatchd.errors import DataError, InputError


@dataclass(frozen=True, slots=True)
class ChainReport:
    """An intact chain: how many records and files, and the first and last sequence numbers."""

    files: list[Path]
    records: int
    first_seq: int | None
    last_seq: int | None
    starts_at_genesis: bool


def _broken(path: Path, line_number: int, message: str) -> DataError:
    return DataError(f"{path}:{line_number}: {message}")


# TODO: the chain has no key, so a writer of the state directory can recompute it after an
# edit. Anchor the latest seq and hash off-host (or key the chain) to detect a full rewrite.
@contextmanager
def _appends_paused(log: Path) -> Iterator[None]:
    """Hold the lock that writers take for each append, when the log has one.

    The daemon writes a batch of records in one write while it holds this lock, so a reader
    that takes it too never reads a record cut in half. A copy without its lock file (or
    one in a folder this process cannot open it in) is read without the lock.
    """
    try:
        descriptor = os.open(log.with_name(log.name + ".lock"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        yield
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH)
        yield
    finally:
        os.close(descriptor)


def verify_files(files: list[Path]) -> ChainReport:
    """Verify `files`, oldest first, as one chain; `DataError` names the first broken record."""
    if not files:
        raise InputError("no audit log found; pass a file or the --state-dir of a daemon")
    with _appends_paused(files[-1]):
        return _verify_locked(files)


def _verify_locked(files: list[Path]) -> ChainReport:
    previous_hash: str | None = None
    previous_place: tuple[Path, int] | None = None
    expected_seq: int | None = None
    first_seq: int | None = None
    starts_at_genesis = False
    records = 0
    for path in files:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"{path} not found") from None
        lines = data.split(b"\n")
        complete = lines[:-1]
        if lines[-1]:
            raise _broken(
                path,
                len(lines),
                "record is incomplete (no newline at the end): the log was truncated mid-record",
            )
        for index, line in enumerate(complete, start=1):
            try:
                chain = json.loads(line)["irwatchd"]["audit"]
                seq = int(chain["seq"])
                prev = str(chain["prev_sha256"])
            except (ValueError, KeyError, TypeError):
                raise _broken(
                    path,
                    index,
                    "is not a complete audit record (invalid JSON or no "
                    "irwatchd.audit fields): the line was changed or cut",
                ) from None
            if expected_seq is None:
                first_seq = seq
                starts_at_genesis = seq == 1
                if seq == 1 and prev != GENESIS:
                    raise _broken(
                        path, index, "first record (seq 1) does not chain to the genesis hash"
                    )
            elif seq != expected_seq:
                raise _broken(
                    path,
                    index,
                    f"seq is {seq} but {expected_seq} was expected: a record before it was "
                    "removed or records were reordered",
                )
            elif prev != previous_hash:
                assert previous_place is not None
                place, number = previous_place
                raise _broken(
                    place,
                    number,
                    f"record was changed: its SHA-256 does not match prev_sha256 of the next "
                    f"record (seq {seq})",
                )
            previous_hash = hashlib.sha256(line).hexdigest()
            previous_place = (path, index)
            expected_seq = seq + 1
            records += 1
    last_seq = None if expected_seq is None else expected_seq - 1
    return ChainReport(files, records, first_seq, last_seq, starts_at_genesis)


def verify_log(path: Path, *, with_rotated: bool = True) -> ChainReport:
    """Verify one audit log, together with its rotated files when `with_rotated` is set."""
    if not with_rotated:
        return verify_files([path] if path.exists() else [])
    files = chain_files(path)
    report = verify_files(files)
    if len(files) == 1 and report.first_seq not in (None, 1):
        # With no rotated file there is nothing the first records could have moved to.
        raise _broken(
            path,
            1,
            f"log starts at seq {report.first_seq} and there is no rotated file: "
            "the first records were removed",
        )
    return report
