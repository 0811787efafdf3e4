"""The main loop's `Waker`: set from signal handlers and threads, never blocking the loop."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from irwatchd.daemon.waker import Waker
from tests.helpers import ROOT

# A timer signal every 0.1 ms whose handler sets the wake-up, while the main thread waits and
# clears in a loop. With `threading.Event`, the handler often ran while the main thread held
# the event's lock, and the process hung or died of recursion.
SIGNAL_STORM = """
import signal, sys, time
from irwatchd.daemon.waker import Waker
wake = Waker()
signal.signal(signal.SIGALRM, lambda number, frame: wake.set())
signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
deadline = time.monotonic() + 2
passes = 0
while time.monotonic() < deadline:
    wake.wait(0.001)
    wake.clear()
    passes += 1
signal.setitimer(signal.ITIMER_REAL, 0, 0)
print(passes)
"""


def test_waker_survives_signal_storm() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SIGNAL_STORM],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 1000


def test_waker_wait_times_out_unset() -> None:
    wake = Waker()
    started = time.monotonic()

    woken = wake.wait(0.05)

    assert not woken
    assert time.monotonic() - started >= 0.04


def test_waker_set_then_clear() -> None:
    wake = Waker()

    wake.set()
    wake.set()
    first = wake.wait(5)
    wake.clear()
    second = wake.wait(0)

    assert first
    assert not second


def test_waker_set_from_thread_wakes_wait() -> None:
    wake = Waker()
    timer = threading.Timer(0.05, wake.set)
    timer.start()
    started = time.monotonic()

    woken = wake.wait(10)

    timer.join()
    assert woken
    assert time.monotonic() - started < 5


def test_waker_full_pipe_does_not_block() -> None:
    wake = Waker()

    for _ in range(200_000):  # far more bytes than a pipe buffer takes
        wake.set()
    wake.clear()

    assert not wake.wait(0)


def test_waker_short_timeout_still_waits() -> None:
    # A watchdog interval of 1.6 ms gives a 0.4 ms wait: it must not turn into a busy loop.
    wake = Waker()
    started = time.perf_counter()

    for _ in range(20):
        wake.wait(0.0004)

    assert time.perf_counter() - started >= 20 * 0.0004
