"""Confirm prefilter candidates and return only the fields that `irwatchd detect` prints.

`Detector.confirm_groups` builds a dict of every named group, which a finding keeps. A row of
`detect` needs only the rule, the user and the source address, so `FieldConfirmer` runs the
same rules in the same order on the line's UTF-8 bytes and slices just those two groups from
RE2's spans. A test compares its rows with the rows of findings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from irwatchd.detection.engine import (
    ATTRIBUTED_BY_SERVER,
    MAX_VIEW_CHARS,
    Detector,
    detection_view,
    memoised_clean_source,
)
from irwatchd.detection.rule import Rule
from irwatchd.parsing.re2match import UNANCHORED, Re2Pattern

_MAX_CACHED_MASKS = 4096

_SpanMatcher = Callable[[object, bytes, int, int], list[tuple[int, int]]]
"""`Re2Pattern.match_spans`: (anchor, data, start, end) to the span of every group."""

Fields = tuple[Rule, str | None, str | None]
"""A rule that matched, with its user and its cleaned source address (None when absent)."""


@dataclass(frozen=True, slots=True)
class _FieldRule:
    """A rule's span matchers, with the group positions of `user` and `source_ip` in each.

    Position 0 means the pattern has no such group.
    """

    rule: Rule
    patterns: tuple[tuple[_SpanMatcher, int, int], ...]
    ignore: tuple[_SpanMatcher, ...]


def _field_rule(
    rule: Rule, patterns: Sequence[Re2Pattern], ignore: Sequence[Re2Pattern]
) -> _FieldRule:
    return _FieldRule(
        rule,
        tuple(
            (pattern.match_spans, pattern.index.get("user", 0), pattern.index.get("source_ip", 0))
            for pattern in patterns
        ),
        tuple(pattern.match_spans for pattern in ignore),
    )


class FieldConfirmer:
    """The rules of one source type, run on the candidates that `prefilter_lines` names."""

    def __init__(self, detector: Detector, source_type: str) -> None:
        if source_type in ATTRIBUTED_BY_SERVER:
            raise ValueError(
                f"invalid source type {source_type!r} for FieldConfirmer: the server writes "
                "its address, so use Detector.confirm"
            )
        self._rules = [
            _field_rule(rule, patterns, ignore)
            for rule, patterns, ignore in detector.ranked_rules(source_type)
        ]
        # The rules of each rule mask seen, most severe first.
        self._by_mask: dict[int, tuple[_FieldRule, ...]] = {}

    def confirm(self, data: bytes, view: str, rule_mask: int) -> list[Fields]:
        """Run the rules of a mask as `Detector.confirm_groups` runs their ids.

        Return each match's rule, user and source address, most severe first and at most one
        per category. `data` is `view` encoded as UTF-8. The user and address are those
        `Detector` gives a finding of this source type.
        """
        rules = self._by_mask.get(rule_mask)
        if rules is None:
            rules = self._rules_of(rule_mask)
        if len(view) > MAX_VIEW_CHARS:
            view = detection_view(view)
            data = view.encode()
        if len(rules) == 1:
            found = _match_fields(rules[0], data, view)
            return [] if found is None else [found]
        matches = []
        seen_categories = set()
        for entry in rules:
            if entry.rule.category in seen_categories:
                continue
            found = _match_fields(entry, data, view)
            if found is not None:
                matches.append(found)
                seen_categories.add(entry.rule.category)
        return matches

    def _rules_of(self, rule_mask: int) -> tuple[_FieldRule, ...]:
        rules = tuple(entry for index, entry in enumerate(self._rules) if rule_mask >> index & 1)
        if len(self._by_mask) >= _MAX_CACHED_MASKS:
            self._by_mask.clear()
        self._by_mask[rule_mask] = rules
        return rules


def _match_fields(entry: _FieldRule, data: bytes, view: str) -> Fields | None:
    """Return the rule, user and cleaned source address of the rule's first matching pattern.

    Return None when no pattern matches or an ignore pattern does. An empty group counts as
    absent, as `groups.get(name) or None` and `clean_source` treat it.
    """
    size = len(data)
    for pattern in entry.patterns:
        spans = pattern[0](UNANCHORED, data, 0, size)
        if spans[0][0] >= 0:
            break
    else:
        return None
    _, user_position, source_position = pattern
    for ignore_spans in entry.ignore:
        if ignore_spans(UNANCHORED, data, 0, size)[0][0] >= 0:
            return None
    # For ASCII text byte offsets are character offsets. Otherwise RE2 matches UTF-8 at
    # character boundaries, so every span decodes on its own.
    is_ascii = size == len(view)
    user = None
    if user_position:
        start, end = spans[user_position]
        if end > start >= 0:
            user = view[start:end] if is_ascii else data[start:end].decode()
    source = None
    if source_position:
        start, end = spans[source_position]
        if end > start >= 0:
            source = memoised_clean_source(
                view[start:end] if is_ascii else data[start:end].decode()
            )
    return entry.rule, user, source
