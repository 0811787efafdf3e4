"""watchdog observers that wake the reader when a watched directory changes.

Events only wake the reader; they never carry data, so a lost, merged or late event costs at
most one poll interval. When inotify watches cannot be added (the per-user watch limit, or a
filesystem without inotify), the watcher falls back to watchdog's polling observer and logs
a warning.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from irwatchd.logger import get_logger

log = get_logger(__name__)


class WakeUp(Protocol):
    """The object that wakes the reader: the daemon's `Waker`, or a `threading.Event` in tests."""

    def set(self) -> None:
        """Wake the reader."""


class _WakeHandler(FileSystemEventHandler):
    def __init__(self, wake: WakeUp) -> None:
        self.wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        # Runs on the observer thread: it must never raise, or watchdog ends that thread.
        try:
            self.wake.set()
        except Exception:  # pragma: no cover - a wake-up does not raise
            log.exception("watch_event_failed", path=getattr(event, "src_path", None))


class DirectoryWatcher:
    """Watches a set of directories and sets `wake` on any change inside them."""

    def __init__(
        self, wake: WakeUp, *, force_polling: bool = False, poll_seconds: float = 1.0
    ) -> None:
        self.wake = wake
        self.poll_seconds = poll_seconds
        self.mode = "polling" if force_polling else "inotify"
        self._observer: BaseObserver = self._new_observer()
        self._watched: set[str] = set()
        self._observer.start()

    def _new_observer(self) -> BaseObserver:
        if self.mode == "polling":
            return PollingObserver(timeout=self.poll_seconds)
        return Observer()

    def update(self, directories: list[str]) -> None:
        """Watch every directory in the list that is not watched yet."""
        for directory in directories:
            if directory in self._watched:
                continue
            try:
                self._observer.schedule(_WakeHandler(self.wake), directory, recursive=False)
            except OSError as error:
                if self.mode == "polling":
                    log.warning("watch_failed", path=directory, error=str(error))
                    continue
                log.warning(
                    "watch_mode_degraded", path=directory, error=str(error), mode="polling",
                    hint="raise fs.inotify.max_user_watches; irwatchd polls meanwhile",
                )  # fmt: skip
                self._switch_to_polling()
                self.update(directories)
                return
            self._watched.add(directory)
            log.info("directory_watched", path=directory, mode=self.mode)

    def _switch_to_polling(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)
        self.mode = "polling"
        self._observer = self._new_observer()
        self._watched.clear()
        self._observer.start()

    def is_alive(self) -> bool:
        """Return whether the observer thread and every emitter thread (one per folder) run."""
        emitters = list(self._observer.emitters)
        return self._observer.is_alive() and all(emitter.is_alive() for emitter in emitters)

    def restart_if_dead(self, directories: list[str]) -> None:
        """Start a new observer when a watcher thread died, and watch the directories again."""
        if self.is_alive():
            return
        log.error("observer_thread_died", mode=self.mode, action="restarting",
                  folders=len(self._watched))  # fmt: skip
        with contextlib.suppress(RuntimeError):
            self._observer.stop()
        self._observer = self._new_observer()
        self._watched.clear()
        self._observer.start()
        self.update(directories)

    def stop(self) -> None:
        """Stop the observer thread."""
        self._observer.stop()
        self._observer.join(timeout=5)
