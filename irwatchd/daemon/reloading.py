"""Reload validation on a worker thread, so detection goes on while new rules compile.

Compiling the rules takes about a second (Hyperscan releases the GIL meanwhile). The main
loop starts a `ReloadJob` on SIGHUP, keeps reading and detecting with the old configuration,
and swaps in the new one on its own thread once the job is done. Nothing is shared with the
job except the arguments it gets and the result it hands back.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from irwatchd.daemon.settings import ValidatedConfiguration, validate_configuration
from irwatchd.errors import IrwatchdError
from irwatchd.logger import get_logger
from irwatchd.sources.watcher import WakeUp

log = get_logger(__name__)


class ReloadJob:
    """One validation of the configuration, running on its own thread.

    When it is done, `result` is the validated configuration, or `error` is the reason the
    configuration was rejected. `wake` is set on completion so the main loop does not wait
    for its next poll.
    """

    def __init__(
        self,
        config_path: Path | None,
        state_dir: str | None,
        watch: list[str] | None,
        wake: WakeUp,
    ) -> None:
        self.config_path = config_path
        self.state_dir = state_dir
        self.watch = watch
        self.wake = wake
        self.started = time.monotonic()
        self.result: ValidatedConfiguration | None = None
        self.error: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reload", daemon=True)
        self._thread.start()

    def done(self) -> bool:
        """Return whether validation finished, with a result or an error."""
        return self._done.is_set()

    def elapsed(self) -> float:
        """Seconds since the job started."""
        return time.monotonic() - self.started

    def _run(self) -> None:
        try:
            self.result = validate_configuration(self.config_path, self.state_dir, self.watch)
        except IrwatchdError as error:
            self.error = str(error)
        except Exception as error:
            # A bug in validation must reject the reload, never end the daemon.
            log.exception("reload_validation_crashed", config_path=str(self.config_path))
            self.error = f"validation failed unexpectedly: {type(error).__name__}: {error}"
        finally:
            self._done.set()
            self.wake.set()
