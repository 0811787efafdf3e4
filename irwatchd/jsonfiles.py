"""Atomic JSON file writes and checked reads of the state directory's JSON files.

Writes go through a temporary file, fsync and rename, so a crash never leaves half a file.
Tickets and alert files are written without the fsyncs (`durable=False`) and their folder is
fsynced once per batch, so a power loss (not a process crash) can leave such a file empty.
A process running as root (`irwatchd blocks`, `irwatchd incidents` run with sudo) gives every
file it creates the owner and group of the folder it is in. The daemon, which may run as an
unprivileged user, can then still read and replace it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from irwatchd.errors import DataError


class DamagedStateError(DataError, ValueError):
    """A state file that exists but is not valid JSON of the expected shape.

    It is also a `ValueError`, as `json.JSONDecodeError` was for callers that catch that.
    """

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(
            f"{path} is damaged: {problem}; move it aside (for example to "
            f"{path.name}.damaged) and irwatchd starts a new one"
        )


def match_owner(descriptor: int, reference: Path) -> None:
    """Give an open file the owner and group of `reference` when running as root.

    An unprivileged process cannot change owners and keeps its own, which is then the
    daemon's user already.
    """
    if os.geteuid() != 0:
        return
    expected = os.stat(reference)
    current = os.fstat(descriptor)
    if (current.st_uid, current.st_gid) != (expected.st_uid, expected.st_gid):
        os.fchown(descriptor, expected.st_uid, expected.st_gid)


def open_lock_file(path: Path) -> int:
    """Open or create a lock file for `flock`, owned like its folder, and return its descriptor."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        match_owner(descriptor, path.parent)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


_MEMBER_ENCODER = json.JSONEncoder(separators=(", ", ": "), check_circular=False)
"""One shared encoder, because `json.dumps` with `separators` builds a new one per call.

State documents are trees that irwatchd builds, so the cycle check is off; a cycle would
raise RecursionError instead of ValueError.
"""


def write_json_atomic(
    path: Path,
    document: Any,
    *,
    mode: int = 0o640,
    owner_of: Path | None = None,
    durable: bool = True,
    indent: int | None = 2,
) -> int:
    """Replace `path` with `document` as JSON; readers see the old or the new file, never a mix.

    When running as root, the new file gets the owner and group of `owner_of`, by default
    the folder that contains `path`. With `durable=False` neither the file nor its folder
    is fsynced: the caller fsyncs the folder once for many files (`fsync_directory`).
    `indent=None` writes one line with Python's C encoder, several times faster than the
    indented form, which takes the pure-Python encoder. Returns the file's modification time
    in nanoseconds.
    """
    if indent is None:
        text = _MEMBER_ENCODER.encode(document) + "\n"
    else:
        text = json.dumps(document, indent=indent, sort_keys=False) + "\n"
    return write_text_atomic(path, text, mode=mode, owner_of=owner_of, durable=durable)


def write_json_lines_object(
    path: Path,
    document: dict[str, Any],
    *,
    mode: int = 0o640,
    durable: bool = True,
    members: MemberLines | None = None,
) -> int:
    """Replace `path` with a JSON object written one compact member per line.

    This is valid JSON like `write_json_atomic` writes, but Python's C encoder writes it,
    while the indented form takes the pure-Python encoder. A large object, such as the
    10,000 blocks of a burst, takes about half the time. Each member stays one line to read.
    `durable` is as in `write_json_atomic`. With `members`, the lines of values written
    before are reused (see `MemberLines`). Returns the file's modification time in
    nanoseconds.
    """
    lines = (members or MemberLines()).encode(document)
    text = "{\n" + ",\n".join(lines) + "\n}\n" if lines else "{}\n"
    return write_text_atomic(path, text, mode=mode, durable=durable)


class MemberLines:
    """The encoded `"key": value` lines of an object that is written again and again.

    A line is reused while its key maps to the same value object, so a caller that saves
    after each change encodes only the members it added or replaced. The caller must
    replace a value to change it: a value changed in place keeps its old line.
    """

    def __init__(self) -> None:
        self._lines: dict[str, tuple[Any, str]] = {}

    def encode(self, document: dict[str, Any]) -> list[str]:
        """Return the member lines of `document` in order, and keep them for the next call."""
        encode = _MEMBER_ENCODER.encode
        lines: dict[str, tuple[Any, str]] = {}
        for key, value in document.items():
            cached = self._lines.get(key)
            if cached is None or cached[0] is not value:
                cached = (value, f"{encode(key)}: {encode(value)}")
            lines[key] = cached
        self._lines = lines
        return [line for _, line in lines.values()]


def write_text_atomic(
    path: Path,
    text: str | Iterable[str],
    *,
    mode: int = 0o640,
    owner_of: Path | None = None,
    durable: bool = True,
) -> int:
    """Replace `path` with `text` through a temporary file and a rename, as `write_json_atomic`.

    `text` may also be pieces written as they come, so a large document (a scan report) need
    not be in memory at once. Returns the new file's modification time in nanoseconds.
    """
    folder = path.parent
    descriptor, temporary = _create_temporary(folder, path.name)
    try:
        try:
            for piece in (text,) if isinstance(text, str) else text:
                _write_all(descriptor, piece.encode())
            match_owner(descriptor, owner_of or folder)
            os.fchmod(descriptor, mode)
            if durable:
                os.fsync(descriptor)
            modified_ns = os.fstat(descriptor).st_mtime_ns
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if durable:
        fsync_directory(folder)
    return modified_ns


_TEMPORARY_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMPORARY_ATTEMPTS = 100


def _create_temporary(folder: Path, name: str) -> tuple[int, str]:
    """Create and open `.<name>.<random hex>` in `folder`, as `tempfile.mkstemp` would.

    It opens with the same flags as `mkstemp` but skips its name generator and argument
    checks, about 30 µs a file in a cProfile of the burst benchmark (Python 3.11, 2 cores).
    Returns the descriptor and the temporary file's path.
    """
    for _ in range(_TEMPORARY_ATTEMPTS):
        temporary = f"{folder}/.{name}.{os.urandom(6).hex()}"
        try:
            return os.open(temporary, _TEMPORARY_FLAGS, 0o600), temporary
        except FileExistsError:
            continue
        except FileNotFoundError:
            folder.mkdir(parents=True, exist_ok=True)
    raise FileExistsError(
        f"no free temporary name for {folder / name} after {_TEMPORARY_ATTEMPTS} attempts; "
        f"remove the stale .{name}.* files in {folder}"
    )


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def fsync_directory(directory: Path) -> None:
    """fsync a folder, so the renames and new files in it survive a power loss."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_json(path: Path, default: Any) -> Any:
    """Read a JSON file, returning `default` when it does not exist.

    Raises `DamagedStateError` when the file is not valid JSON (an empty file included).
    """
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return default
    except UnicodeDecodeError as error:
        raise DamagedStateError(path, f"not UTF-8 ({error.reason})") from None
    except json.JSONDecodeError as error:
        raise DamagedStateError(
            path, f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None


def read_json_object(path: Path, default: dict[str, Any]) -> dict[str, Any]:
    """Read a JSON file that must contain an object, or raise `DamagedStateError`."""
    document = read_json(path, default)
    if not isinstance(document, dict):
        raise DamagedStateError(path, f"expected a JSON object, found {type(document).__name__}")
    return document


def move_aside(path: Path) -> Path:
    """Rename a damaged file to `<name>.damaged-<UTC time>` and return the new path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    os.replace(path, target)
    return target
