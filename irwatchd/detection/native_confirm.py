"""RE2 with groups in C++ for the candidate lines of raw syslog blocks, in the daemon.

`Detector.confirm` runs each candidate rule's patterns through google-re2's binding, one call
per pattern, and builds the groups in Python. That was about 5 µs of the 11 µs a candidate
syslog line cost the daemon in a burst of sshd failures. `_rawrows.Confirmer` runs the same
rules in the same order in C++ and returns the named groups of each matching rule. This
module builds the `Finding` from them, as `Detector.confirm` does, and
`tests/test_native_confirm.py` compares the two on the corpus and on hostile lines. Without
the extension, and for a line that the Confirmer leaves to Python, `Detector.confirm` decides.
"""

from __future__ import annotations

import weakref
from json import dumps
from types import ModuleType

from irwatchd.detection.engine import Detector, finding_of
from irwatchd.detection.finding import Finding
from irwatchd.detection.rule import Rule
from irwatchd.parsing.record import LogRecord

_rawrows: ModuleType | None
try:
    from irwatchd.detection import _rawrows  # type: ignore[attr-defined, no-redef]
except ImportError:  # built only where Hyperscan and RE2 headers were installed
    _rawrows = None

_MAX_CACHED_MASKS = 4096
"""Rule masks whose rule positions `NativeConfirmer` keeps; the cache empties when full."""


RuleSpec = tuple[str, int, list[tuple[bytes, int, int, tuple[tuple[str, int], ...]]], list[bytes]]


def rules_spec(detector: Detector) -> list[RuleSpec]:
    """Return the syslog rules in the form `_rawrows` takes, most severe first.

    Each rule is its `rule`, `category` and `severity` as JSON members, a number per category,
    its patterns and its ignore patterns. A pattern is its bytes, the groups of `user` and
    `source_ip` (0 when absent), and its (name, group) pairs in the order of its groups dict.
    """
    categories: dict[str, int] = {}
    spec = []
    for rule, patterns, ignore in detector.ranked_rules("syslog"):
        fields = {"rule": rule.id, "category": rule.category, "severity": rule.severity}
        spec.append(
            (
                dumps(fields)[1:-1],
                categories.setdefault(rule.category, len(categories)),
                [
                    (
                        pattern.pattern.encode(),
                        pattern.index.get("user", 0),
                        pattern.index.get("source_ip", 0),
                        pattern.names,
                    )
                    for pattern in patterns
                ],
                [pattern.pattern.encode() for pattern in ignore],
            )
        )
    return spec


class NativeConfirmer:
    """The syslog rules of one detector in a `_rawrows.Confirmer`, with what builds findings.

    It keeps no reference to the detector, which is the key `native_confirmer` caches it under
    weakly: a reload's new detector would otherwise leave the old one in memory for good.
    """

    def __init__(self, detector: Detector) -> None:
        if _rawrows is None:
            raise RuntimeError(
                "the _rawrows extension is not built; install g++ python3-dev "
                "libhyperscan-dev libre2-dev and run pip install -e . again"
            )
        self._rules: list[Rule] = [rule for rule, _, _ in detector.ranked_rules("syslog")]
        self._confirmer = _rawrows.Confirmer(rules_spec(detector))
        self._positions_of_mask: dict[int, list[int]] = {}

    def confirm(self, record: LogRecord, data: bytes, rule_mask: int) -> list[Finding] | None:
        """Return the findings of a candidate line, as `Detector.confirm` would.

        `data` is the line's UTF-8 bytes, which are its view, and `rule_mask` comes from
        `Detector.prefilter_lines`. Return None when the line is left to `Detector.confirm`.
        """
        found = self._confirmer.confirm(data, self._positions(rule_mask))
        if found is None:
            return None
        rules = self._rules
        return [finding_of(rules[position], record, groups) for position, groups in found]

    def _positions(self, rule_mask: int) -> list[int]:
        positions = self._positions_of_mask.get(rule_mask)
        if positions is None:
            positions = [index for index in range(rule_mask.bit_length()) if rule_mask >> index & 1]
            if len(self._positions_of_mask) >= _MAX_CACHED_MASKS:
                self._positions_of_mask.clear()
            self._positions_of_mask[rule_mask] = positions
        return positions


_confirmers: weakref.WeakKeyDictionary[Detector, NativeConfirmer | None] = (
    weakref.WeakKeyDictionary()
)


def native_confirmer(detector: Detector) -> NativeConfirmer | None:
    """Return the detector's `NativeConfirmer`, built at the first call, or None without one.

    None where the extension is missing, the detector has no syslog prefilter, or the C++ RE2
    rejects a pattern that the binding accepted.
    """
    if detector in _confirmers:
        return _confirmers[detector]
    confirmer = None
    if _rawrows is not None and detector.has_prefilter("syslog"):
        try:
            confirmer = NativeConfirmer(detector)
        except ValueError:
            confirmer = None  # Detector.confirm decides every line, as without the extension
    _confirmers[detector] = confirmer
    return confirmer
