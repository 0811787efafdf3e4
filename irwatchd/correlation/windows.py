"""Sliding-window thresholds: N findings of some categories from one source within T seconds.

Each (window spec, source) pair keeps the times of its recent findings. When the count reaches
the threshold, one correlated finding is emitted, and no other until the source has gone a
whole window without a finding, so a long attack makes one incident and not one per line.
Memory is bounded by time and count: a pair whose last finding is a whole window older than the
newest finding is dropped, as the next finding would empty it anyway, and at most
`max_sources` pairs are kept, the least recently seen dropped first. So a finding more than
a window out of time order may miss times that an in-order one would count. A scan reads its
files one after another and keeps pairs by count only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime

from irwatchd.config import CorrelationSpec
from irwatchd.detection.finding import Finding

DEFAULT_MAX_SOURCES = 100_000


class SlidingWindows:
    """Counts findings per source for each correlation spec and emits threshold findings."""

    def __init__(
        self, specs: Sequence[CorrelationSpec], max_sources: int = DEFAULT_MAX_SOURCES
    ) -> None:
        self.specs = tuple(specs)
        self.max_sources = max_sources
        self._window_of = {spec.name: spec.window_seconds for spec in self.specs}
        self.expire_by_time = True
        """Whether each finding drops the pairs a whole window older than it.

        Off for a scan: it reads one file after another, so a later file can go back to the
        hours of an earlier one, and the pairs of that time must still count.
        """
        # The times of each (spec, source) pair's recent findings, oldest first, at most
        # `threshold` of them. A bare list, not a deque (an empty deque already takes 760
        # bytes) or an object around it. With two times, a window takes about 280 bytes with its
        # key (tracemalloc, CPython 3.11), so 100,000 sources need about 27 MiB.
        self._windows: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        # Pairs that emitted their correlated finding and have had a finding within a window
        # since. Only sources past the threshold are in it, which most sources never reach.
        self._fired: set[tuple[str, str]] = set()

    def __len__(self) -> int:
        return len(self._windows)

    def observe(self, finding: Finding, moment: datetime) -> list[Finding]:
        """Count one finding at `moment`; return the correlated findings it completes."""
        if finding.source_ip is None:
            return []
        emitted = []
        stamp = moment.timestamp()
        for spec in self.specs:
            if finding.category not in spec.categories:
                continue
            key = (spec.name, finding.source_ip)
            times = self._windows.get(key)
            if times is None:
                times = self._windows[key] = []
                if len(self._windows) > self.max_sources:
                    oldest, _ = self._windows.popitem(last=False)
                    self._fired.discard(oldest)
            else:
                self._windows.move_to_end(key)
            horizon = stamp - spec.window_seconds
            expired = 0
            while expired < len(times) and times[expired] < horizon:
                expired += 1
            del times[:expired]
            if not times:
                self._fired.discard(key)
            # A "repeated N times" line counts N failures, but never more than the threshold
            # needs, so memory per source stays bounded.
            times.extend([stamp] * min(finding.count, spec.threshold))
            del times[: max(0, len(times) - spec.threshold)]
            if len(times) >= spec.threshold and key not in self._fired:
                self._fired.add(key)
                emitted.append(
                    Finding(
                        rule_id=spec.name,
                        category=spec.category,
                        severity=spec.severity,
                        record=finding.record,
                        source_ip=finding.source_ip,
                        user=finding.user,
                        count=len(times),
                        fields={"threshold": str(spec.threshold),
                                "window_seconds": str(spec.window_seconds)},
                    )
                )  # fmt: skip
        if self.expire_by_time:
            self._expire(stamp)
        return emitted

    def _expire(self, now: float) -> None:
        """Drop the least recently seen pairs while their last finding is a window before `now`.

        Pairs are kept in the order of their last finding, so only the first ones need a look.
        A daemon that runs for days so keeps the pairs of the last window, not up to 100,000.
        """
        windows = self._windows
        while windows:
            key, times = next(iter(windows.items()))
            if times and now - times[-1] <= self._window_of.get(key[0], 0):
                return
            del windows[key]
            self._fired.discard(key)
