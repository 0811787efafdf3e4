"""The status line rate is averaged over a minute, so bursty logs do not show 0 lines/s."""

from __future__ import annotations

from irwatchd.daemon.statusfile import RateMeter


def test_rate_averages_a_burst_over_the_window() -> None:
    meter = RateMeter(window_seconds=60, start=0.0)
    meter.sample(600, now=2.0)
    rates = [meter.sample(600, now=float(moment)) for moment in range(4, 61, 2)]

    assert rates[0] == 150.0
    assert rates[-1] == 10.0
    assert all(rate > 0 for rate in rates), "a quiet spell inside the window showed 0 lines/s"


def test_rate_forgets_lines_older_than_the_window() -> None:
    meter = RateMeter(window_seconds=60, start=0.0)
    meter.sample(600, now=2.0)
    for moment in range(4, 130, 2):
        rate = meter.sample(600, now=float(moment))

    assert rate == 0.0


def test_rate_of_a_steady_stream() -> None:
    meter = RateMeter(window_seconds=60, start=0.0)
    for moment in range(2, 200, 2):
        rate = meter.sample(moment * 50, now=float(moment))

    assert rate == 50.0
