"""Newline counts for line numbers, with the C++ extension's vectorised loop where it is built.

`bytes.count(b"\\n")` compares byte by byte. On the 1,000,000-line benchmark auth.log it took
62 ms and the extension's loop 11 ms. `detect` counts each byte of its input once in a worker,
and its parent counts the bytes before each range while the workers run.
"""

from __future__ import annotations

from types import ModuleType

_rawrows: ModuleType | None
try:
    from irwatchd.detection import _rawrows  # type: ignore[attr-defined, no-redef]
except ImportError:  # built only where Hyperscan and RE2 headers were installed
    _rawrows = None


def count_newlines(data: bytes, start: int = 0, end: int | None = None) -> int:
    """Return the number of newline bytes in `data[start:end]`, for `start` and `end` >= 0."""
    stop = len(data) if end is None else end
    if _rawrows is not None:
        count: int = _rawrows.count_newlines(data, start, stop)
        return count
    return data.count(b"\n", start, stop)
