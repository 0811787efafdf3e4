"""structlog set-up for the daemon's own logs: JSON when stderr is not a terminal.

Under systemd, stderr goes to journald, so each event is one JSON line. Warnings and errors
that repeat with identical fields are rate-limited by `RepeatLimiter`, so a failing disk or a
dead webhook cannot flood the journal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any, TextIO, cast

import structlog

REPEAT_WINDOW_SECONDS = 60.0
MAX_TRACKED_REPEATS = 1024
_LIMITED_LEVELS = frozenset({"warning", "error", "critical"})
# Fields that differ between repeats of one problem, such as the offset of each cut line.
_IGNORED_FIELDS = frozenset(
    {"timestamp", "level", "event", "offset", "line_number", "attempt", "retry_in_seconds",
     "size", "kept_bytes", "skipped_bytes", "bytes"}
)  # fmt: skip


class RepeatLimiter:
    """A structlog processor that drops identical warnings and errors within a window.

    Two events are identical when their level, event name and every other field are equal,
    leaving out the timestamp and the per-repeat fields in `_IGNORED_FIELDS`. The first one
    passes, and repeats within `window_seconds` are dropped and counted. After the window
    ends, the count is logged as `log_repeats_suppressed` by the next event of any kind or
    the next `report_expired()` call (the daemon makes one every 2 s). `flush()` logs the
    counts of open windows at shutdown.
    """

    def __init__(
        self,
        window_seconds: float = REPEAT_WINDOW_SECONDS,
        max_tracked: int = MAX_TRACKED_REPEATS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_seconds = window_seconds
        self.max_tracked = max_tracked
        self.clock = clock
        self._lock = threading.Lock()
        # key -> [first time in this window, dropped count, event name, level]
        self._seen: OrderedDict[tuple[Any, ...], list[Any]] = OrderedDict()
        self._reporting = threading.local()

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """Pass the event on, or raise `structlog.DropEvent` for a repeat inside the window."""
        if getattr(self._reporting, "active", False):
            return event_dict
        level = str(event_dict.get("level", method_name))
        due = self._expired(self.clock())
        is_repeat = False
        if level in _LIMITED_LEVELS:
            key = self._key(level, event_dict)
            with self._lock:
                entry = self._seen.get(key)
                if entry is not None:
                    entry[1] += 1
                    is_repeat = True
                else:
                    self._seen[key] = [self.clock(), 0, event_dict.get("event"), level]
                    while len(self._seen) > self.max_tracked:
                        self._seen.popitem(last=False)
        self._report(due)
        if is_repeat:
            raise structlog.DropEvent
        return event_dict

    def report_expired(self) -> None:
        """Log the counts of windows that ended, without waiting for another event."""
        self._report(self._expired(self.clock()))

    def flush(self) -> None:
        """Log the counts of every window that dropped repeats, and forget all windows."""
        with self._lock:
            due = [(entry[2], entry[3], entry[1]) for entry in self._seen.values() if entry[1]]
            self._seen.clear()
        self._report(due)

    @staticmethod
    def _key(level: str, event_dict: MutableMapping[str, Any]) -> tuple[Any, ...]:
        fields = tuple(
            sorted((name, repr(value)) for name, value in event_dict.items()
                   if name not in _IGNORED_FIELDS)
        )  # fmt: skip
        return (level, event_dict.get("event"), fields)

    def _expired(self, now: float) -> list[tuple[Any, str, int]]:
        due = []
        with self._lock:
            for key, entry in list(self._seen.items()):
                if now - entry[0] < self.window_seconds:
                    continue
                del self._seen[key]
                if entry[1]:
                    due.append((entry[2], entry[3], entry[1]))
        return due

    def _report(self, due: list[tuple[Any, str, int]]) -> None:
        if not due:
            return
        self._reporting.active = True
        try:
            logger = structlog.get_logger(__name__)
            for event, level, count in due:
                logger.warning(
                    "log_repeats_suppressed", repeated_event=event, repeated_level=level,
                    suppressed=count, window_seconds=self.window_seconds,
                )  # fmt: skip
        finally:
            self._reporting.active = False


class TolerantStream:
    """The daemon's log output: a line whose write fails with an OSError is counted and lost.

    `run --daemonize` logs to a file in the state folder, and that disk can fill up. A failed
    log write must not end the daemon, which goes on detecting and blocking. Each line goes
    out in one `os.write`, so a failed one leaves no half line behind in a buffer. Before the
    next line that can be written, the count of lost lines is written as a
    `log_lines_lost` event.
    """

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._lock = threading.Lock()
        self.lost_lines = 0
        try:
            self._descriptor: int | None = stream.fileno()
            stream.flush()
        except (AttributeError, OSError, ValueError):
            self._descriptor = None  # a stream without a file, such as pytest's capture

    def write(self, text: str) -> int:
        """Write `text` if the output takes it, else count it as lost; return its length."""
        with self._lock:
            if self.lost_lines and self._put(_lost_line(self.lost_lines)):
                self.lost_lines = 0
            if not self._put(text):
                self.lost_lines += text.count("\n") or 1
        return len(text)

    def flush(self) -> None:
        """Flush the underlying stream when it is not written through its descriptor."""
        if self._descriptor is None:
            with self._lock, contextlib.suppress(OSError):
                self.stream.flush()

    def isatty(self) -> bool:
        """Return whether the output is a terminal."""
        return bool(self.stream.isatty())

    def _put(self, text: str) -> bool:
        try:
            if self._descriptor is None:
                self.stream.write(text)
                return True
            view = memoryview(text.encode("utf-8", "backslashreplace"))
            while view:
                view = view[os.write(self._descriptor, view) :]
        except OSError:
            return False
        return True


def _lost_line(count: int) -> str:
    event = {
        "lost_lines": count, "event": "log_lines_lost", "level": "warning",
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "hint": "the log output could not be written, often because its disk was full",
    }  # fmt: skip
    return json.dumps(event) + "\n"


_limiter: RepeatLimiter | None = None
_standard_handler: logging.Handler | None = None


def configure_logging(
    level: str = "info",
    *,
    json_output: bool | None = None,
    repeat_window_seconds: float = REPEAT_WINDOW_SECONDS,
) -> None:
    """Send structlog events to stderr, as JSON lines for journald or coloured for a terminal."""
    global _limiter
    if json_output is None:
        json_output = not sys.stderr.isatty()
    renderer: structlog.typing.Processor
    if json_output:
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=True)
    _limiter = RepeatLimiter(repeat_window_seconds)
    _route_standard_logging(level, renderer)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _limiter,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_number(level)),
        logger_factory=structlog.WriteLoggerFactory(file=_output()),
        cache_logger_on_first_use=False,
    )


def _route_standard_logging(level: str, renderer: structlog.typing.Processor) -> None:
    """Render records of libraries that use `logging` (watchdog, for one) like our own events.

    Without this, Python's last-resort handler would print their warnings as plain text
    between the JSON lines. Their debug and info records stay off unless `level` is debug.
    """
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
        ],
    )
    global _standard_handler
    root = logging.getLogger()
    if _standard_handler is not None:
        root.removeHandler(_standard_handler)
    _standard_handler = logging.StreamHandler(_output())
    _standard_handler.setFormatter(formatter)
    root.addHandler(_standard_handler)
    root.setLevel(logging.DEBUG if level == "debug" else max(logging.WARNING, _number(level)))
    # watchdog logs a debug record per inotify event, one per write to a watched log, which
    # would bury irwatchd's own debug events. At other levels the root level filters it.
    logging.getLogger("watchdog").setLevel(logging.INFO if level == "debug" else logging.NOTSET)


_tolerant: TolerantStream | None = None


def _output() -> TextIO:
    """Return the `TolerantStream` over the current `sys.stderr`, the same one while it stays."""
    global _tolerant
    if _tolerant is None or _tolerant.stream is not sys.stderr:
        _tolerant = TolerantStream(sys.stderr)
    return cast(TextIO, _tolerant)


def _number(level: str) -> int:
    return logging.getLevelNamesMapping()[level.upper()]


def report_suppressed() -> None:
    """Log the counts of repeats dropped in windows that have ended."""
    if _limiter is not None:
        _limiter.report_expired()


def flush_suppressed() -> None:
    """Log the counts of repeats dropped so far; the daemon calls this before it exits."""
    if _limiter is not None:
        _limiter.flush()
