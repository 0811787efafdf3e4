"""An on-disk cache of compiled Hyperscan databases, keyed by everything that went into them.

Compiling the prefilter database of a large rule set can take seconds (bounded repeats such
as `[^}]{0,200}` are costly in prefilter mode), and every `detect`, `scan`, daemon start and
reload compiles the same rules again. The cache stores `hyperscan.dumpb` output under a key
made of the Hyperscan version, the flags and the expressions, so a changed rule misses.

The cache lives in `$IRWATCHD_CACHE_DIR`, else `$XDG_CACHE_HOME/irwatchd`, else
`~/.cache/irwatchd`; set `IRWATCHD_CACHE_DIR` to an empty string to turn it off. A folder or
file that another user owns or can write is ignored, because a database is trusted code-like
input for the scanner.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from irwatchd.logger import get_logger

log = get_logger(__name__)

CACHE_ENV = "IRWATCHD_CACHE_DIR"
MAX_ENTRIES = 16
"""Databases kept; each rule edit adds one (about 3 MiB for the default rules' web database)."""


def cache_dir() -> Path | None:
    """Return the cache folder to use, or None when the cache is turned off."""
    configured = os.environ.get(CACHE_ENV)
    if configured is not None:
        return Path(configured) if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "irwatchd"


def _is_private(path: Path) -> bool:
    """Return whether `path` is owned by this user and writable by no one else."""
    try:
        info = path.stat()
    except OSError:
        return False
    return info.st_uid == os.geteuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def cache_key(version: str, expressions: list[bytes], flags: list[int]) -> str:
    """Return the hex SHA-256 of the Hyperscan version, flags and length-prefixed expressions."""
    digest = hashlib.sha256(f"hyperscan {version}\n{flags!r}\n".encode())
    for expression in expressions:
        digest.update(len(expression).to_bytes(8, "big"))
        digest.update(expression)
    return digest.hexdigest()


def _cache_path(hyperscan: Any, expressions: list[bytes], flags: list[int]) -> Path | None:
    folder = cache_dir()
    if folder is None:
        return None
    return folder / f"hyperscan-{cache_key(hyperscan.__version__, expressions, flags)}.db"


def load_later_or_compile(
    hyperscan: Any, expressions: list[bytes], flags: list[int], compile_database: Callable[[], Any]
) -> Callable[[], Any]:
    """Return a function that returns the database, compiling it now unless it is cached.

    A cached database compiled before, so only its load is put off until the first call: a
    run that never scans lines of its source type never spends the memory. Each call returns
    the same database.
    """
    path = _cache_path(hyperscan, expressions, flags)
    if path is None or not (_is_private(path.parent) and _is_private(path)):
        database = load_or_compile(hyperscan, expressions, flags, compile_database)
        return lambda: database
    return functools.cache(lambda: load_or_compile(hyperscan, expressions, flags, compile_database))


def load_or_compile(
    hyperscan: Any, expressions: list[bytes], flags: list[int], compile_database: Callable[[], Any]
) -> Any:
    """Return the cached database for these expressions, or compile it and try to cache it."""
    path = _cache_path(hyperscan, expressions, flags)
    if path is None:
        return compile_database()
    folder = path.parent
    if _is_private(folder) and _is_private(path):
        try:
            database = hyperscan.loadb(path.read_bytes(), hyperscan.HS_MODE_BLOCK)
            database.scratch = hyperscan.Scratch(database)
            log.debug("hyperscan_cache_loaded", path=str(path))
            return database
        except (OSError, hyperscan.error) as error:
            log.warning("hyperscan_cache_load_failed", path=str(path), error=str(error),
                        hint="the database is compiled again and the file replaced")  # fmt: skip
    database = compile_database()
    store_file(path, lambda: hyperscan.dumpb(database), "hyperscan-*.db")
    return database


def load_or_build_bytes(
    version: str,
    expressions: list[bytes],
    flags: list[int],
    build: Callable[[], bytes],
    *,
    rebuild: bool = False,
) -> bytes:
    """Return serialised database bytes from the cache, or `build()` them and try to cache them.

    This is for databases of a Hyperscan library other than the `hyperscan` module's, whose
    bytes the caller loads itself; `version` names that library. With `rebuild`, the cached
    bytes are replaced, for a caller that could not load them.
    """
    folder = cache_dir()
    if folder is None:
        return build()
    path = folder / f"native-{cache_key(version, expressions, flags)}.db"
    cached = None if rebuild else read_private(path)
    if cached is not None:
        return cached
    data = build()
    store_file(path, lambda: data, "native-*.db")
    return data


def read_private(path: Path) -> bytes | None:
    """Return a cache file's bytes, or None when it or its folder is missing or not private."""
    if not (_is_private(path.parent) and _is_private(path)):
        return None
    try:
        return path.read_bytes()
    except OSError as error:
        log.warning("cache_read_failed", path=str(path), error=str(error),
                    hint="the file is built again and replaced")  # fmt: skip
        return None


def store_file(path: Path, serialise: Callable[[], bytes], pattern: str) -> None:
    """Write a cache file atomically into a private cache folder, then prune the folder.

    `pattern` names the files of this kind, of which the newest `MAX_ENTRIES` are kept.
    """
    folder = path.parent
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        log.warning("cache_skipped", path=str(folder),
                    hint=f"the cache path is a file; remove it or set {CACHE_ENV}")  # fmt: skip
        return
    except OSError as error:
        log.warning("cache_write_failed", path=str(path), error=str(error))
        return
    try:
        if not _is_private(folder):
            log.warning("cache_skipped", path=str(folder),
                        hint="the cache folder must be owned by this user and not "
                             f"writable by others; fix it or set {CACHE_ENV}")  # fmt: skip
            return
        prefix = "." + pattern.split("*", 1)[0]
        with tempfile.NamedTemporaryFile(dir=folder, prefix=prefix, delete=False) as handle:
            handle.write(serialise())
        os.replace(handle.name, path)
        _prune(folder, pattern)
    except OSError as error:
        log.warning("cache_write_failed", path=str(path), error=str(error))


def _prune(folder: Path, pattern: str = "hyperscan-*.db") -> None:
    """Delete all but the `MAX_ENTRIES` most recently written databases named by `pattern`."""
    entries = sorted(folder.glob(pattern), key=lambda item: item.stat().st_mtime)
    for stale in entries[:-MAX_ENTRIES]:
        stale.unlink(missing_ok=True)
