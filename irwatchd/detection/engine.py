"""The two-stage detector: a Hyperscan prefilter over a whole batch, then RE2 on candidates.

Stage one compiles every rule pattern of a source type into one Hyperscan database in
prefilter mode and scans the batch's views joined by newlines, so lines that no rule can
match cost no Python work. Stage two runs the rule's RE2 pattern, which has the named groups,
only on the (line, rule) pairs stage one reported. Both engines run in time linear in the
input; no backtracking engine ever reads log text.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import lru_cache

import re2

from irwatchd.detection.addresses import clean_source
from irwatchd.detection.finding import Finding, severity_rank
from irwatchd.detection.hscache import load_later_or_compile
from irwatchd.detection.rule import Rule
from irwatchd.errors import ConfigError, Problem
from irwatchd.logger import get_logger
from irwatchd.parsing.re2match import Re2Pattern
from irwatchd.parsing.record import SOURCE_TYPES, LogRecord

try:
    import hyperscan
except ImportError:  # pragma: no cover - the pinned wheel exists for x86_64 and aarch64
    hyperscan = None  # type: ignore[assignment]

log = get_logger(__name__)

MAX_COUNT = 10_000
"""Cap on a rule's `count_field`, so one forged "repeated N times" cannot count for millions."""

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_RE2_OPTIONS.max_mem = 64 << 20

memoised_clean_source = lru_cache(maxsize=8192)(clean_source)
"""`clean_source`, memoised: one attacking address appears on thousands of lines.

Each entry keeps two strings and a cache link, about 200 bytes, so 65,536 entries took 13 MiB
of the daemon's memory under a flood from 100,000 sources (tracemalloc, CPython 3.11).
"""

MAX_VIEW_CHARS = 32 * 1024
"""Maximum view length, in characters, that rules see. Longer views keep their first and last half.

By default Apache 2.4 rejects request lines and header fields over 8190 bytes, nginx over its
8 KiB header buffers, and rsyslog cuts messages at 8 KiB, so real lines fit. The cut bounds
the cost of a hostile line. Hyperscan and RE2 run in linear time, but a 1 MiB line of
repeated rule fragments still cost the prefilter up to 300 ms (tests/test_redos.py). The head
keeps `^`-anchored text and the tail keeps the `$`-anchored attribution fields (sshd's
"from ADDR port N").
"""

MAX_CACHED_VIEWS = 8192
"""Views whose candidate rules `prefilter_repeated_views` keeps; the cache empties when full."""

_MAX_CACHED_MASKS = 4096
"""Rule masks whose rule ids `rule_ids_of` keeps; the cache empties when full."""

ATTRIBUTED_BY_SERVER = frozenset({"access_log", "error_log"})
"""Source types whose client address comes from the parser, never from a rule's groups."""


def detection_view(view: str) -> str:
    # NOTE: the middle of an over-long view is not scanned; MAX_VIEW_CHARS gives the reason.
    if len(view) <= MAX_VIEW_CHARS:
        return view
    half = MAX_VIEW_CHARS // 2
    # A newline keeps RE2's `.` and Hyperscan's line anchors from joining head and tail.
    return view[:half] + "\n" + view[-half:]


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    rule: Rule
    patterns: tuple[Re2Pattern, ...]
    ignore: tuple[Re2Pattern, ...]


def _check_count_field(compiled: _CompiledRule) -> None:
    """Raise `ConfigError` when `count_field` names a group that none of the patterns has."""
    rule = compiled.rule
    if rule.count_field and not any(rule.count_field in item.index for item in compiled.patterns):
        raise ConfigError(
            [Problem(rule.path, rule.line, f"rules.{rule.id}.count_field",
                     f"{rule.count_field!r} is not a named group of the pattern; add "
                     f"(?P<{rule.count_field}>...) to it, or remove count_field")]
        )  # fmt: skip


def _compile_re2(rule: Rule, pattern: str, key: str = "pattern") -> Re2Pattern:
    try:
        return Re2Pattern(pattern, _RE2_OPTIONS)
    except re2.error as error:
        detail = error.args[0].decode() if isinstance(error.args[0], bytes) else str(error)
        if _is_unsupported_syntax(detail):
            fix = "RE2 has no backreferences or lookaround, so rewrite the pattern without them"
        else:
            fix = "fix the pattern"
        raise ConfigError(
            [Problem(rule.path, rule.line, f"rules.{rule.id}.{key}",
                     f"RE2 cannot compile {pattern!r}: {detail}; {fix}")]
        ) from None  # fmt: skip


def _is_unsupported_syntax(detail: str) -> bool:
    """Return whether RE2's message is about lookaround (`(?=`) or a backreference (`\\1`)."""
    lookaround = ("(?=", "(?!", "(?<=", "(?<!")
    if any(detail.startswith(f"invalid perl operator: {start}") for start in lookaround):
        return True
    escape = "invalid escape sequence: \\"
    return detail.startswith(escape) and detail[len(escape) : len(escape) + 1].isdigit()


def _hyperscan_flags() -> int:
    return int(
        hyperscan.HS_FLAG_PREFILTER
        | hyperscan.HS_FLAG_UTF8
        | hyperscan.HS_FLAG_MULTILINE
        | hyperscan.HS_FLAG_ALLOWEMPTY
    )


def _compile_hyperscan(entries: list[tuple[_CompiledRule, str]]) -> Callable[[], object]:
    expressions = [pattern.encode() for _, pattern in entries]
    flags = [_hyperscan_flags()] * len(entries)
    return load_later_or_compile(hyperscan, expressions, flags, lambda: _compile_database(entries))


def _compile_database(entries: list[tuple[_CompiledRule, str]]) -> object:
    database = hyperscan.Database()
    expressions = [pattern.encode() for _, pattern in entries]
    try:
        database.compile(
            expressions=expressions,
            ids=list(range(len(entries))),
            elements=len(entries),
            flags=[_hyperscan_flags()] * len(entries),
        )
    except hyperscan.error:
        # Compile each pattern alone to name the one at fault.
        for compiled, pattern in entries:
            single = hyperscan.Database()
            try:
                single.compile(expressions=[pattern.encode()], flags=[_hyperscan_flags()])
            except hyperscan.error as error:
                rule = compiled.rule
                raise ConfigError(
                    [Problem(rule.path, rule.line, f"rules.{rule.id}.pattern",
                             f"Hyperscan cannot compile {pattern!r}: {error}; simplify the "
                             "construct it names")]
                ) from None  # fmt: skip
        raise
    return database


class Detector:
    """All rules compiled once; `detect` turns a batch of records into findings."""

    def __init__(self, rules: Sequence[Rule], *, prefilter: bool = True) -> None:
        self.rules = tuple(rules)
        self.use_prefilter = prefilter and hyperscan is not None
        self._by_type: dict[str, list[_CompiledRule]] = defaultdict(list)
        self._entries: dict[str, list[tuple[_CompiledRule, int]]] = {}
        # Database loaders by source type; a cached database loads at its first scan.
        self._databases: dict[str, Callable[[], object]] = {}
        # Severity order of every rule by id, so `_confirm` visits only the candidates in order.
        self._rank: dict[int, int] = {}
        self._by_id: dict[int, _CompiledRule] = {}
        self._ids_by_type: dict[str, set[int]] = defaultdict(set)
        # The rule mask bit of each Hyperscan pattern id, by source type, for `prefilter_lines`.
        self._bit_of_pattern: dict[str, list[int]] = {}
        # Candidate rules of views already prefiltered, for `prefilter_repeated_views`.
        self._view_candidates: dict[str, dict[str, frozenset[int]]] = {}
        # Rule ids of the rule masks `rule_ids_of` has seen. Logs show few distinct masks, and
        # the cache is cleared at `_MAX_CACHED_MASKS` so crafted lines cannot grow it.
        self._ids_of_mask: dict[tuple[str, int], frozenset[int]] = {}
        compiled_rules = []
        for rule in sorted(self.rules, key=lambda item: -severity_rank(item.severity)):
            compiled = _CompiledRule(
                rule,
                tuple(_compile_re2(rule, pattern) for pattern in rule.patterns),
                tuple(_compile_re2(rule, pattern, "ignore") for pattern in rule.ignore),
            )
            _check_count_field(compiled)
            compiled_rules.append(compiled)
            for source_type in rule.source_types:
                self._by_type[source_type].append(compiled)
                self._ids_by_type[source_type].add(id(compiled))
            self._rank[id(compiled)] = len(self._rank)
            self._by_id[id(compiled)] = compiled
        if self.use_prefilter:
            # Most rules name both syslog and json, so types with the same rule list share one
            # database: a Hyperscan compile can take a second for a large rule set.
            compiled_for: dict[tuple[tuple[int, int], ...], Callable[[], object]] = {}
            for source_type in SOURCE_TYPES:
                entries = [
                    (compiled, index)
                    for compiled in self._by_type.get(source_type, [])
                    for index in range(len(compiled.patterns))
                ]
                if entries:
                    self._entries[source_type] = entries
                    key = tuple((id(compiled), index) for compiled, index in entries)
                    if key not in compiled_for:
                        patterns = [
                            (compiled, compiled.rule.patterns[index]) for compiled, index in entries
                        ]
                        compiled_for[key] = _compile_hyperscan(patterns)
                    self._databases[source_type] = compiled_for[key]

    def detect(self, records: Sequence[LogRecord]) -> list[Finding]:
        """Return the findings in `records`, in line order; at most one per line and category."""
        by_type: dict[str, list[int]] = defaultdict(list)
        for position, record in enumerate(records):
            by_type[record.source_type].append(position)
        candidates: dict[int, set[int]] = defaultdict(set)
        for source_type, positions in by_type.items():
            rules = self._by_type.get(source_type)
            if not rules:
                continue
            if self.use_prefilter:
                self._prefilter(source_type, records, positions, candidates)
            else:
                for position in positions:
                    candidates[position].update(id(compiled) for compiled in rules)
        findings = []
        for position in sorted(candidates):
            record = records[position]
            findings.extend(self._confirm(record, candidates[position]))
        return findings

    def has_prefilter(self, source_type: str) -> bool:
        """Return whether lines of `source_type` go through a Hyperscan prefilter database."""
        return self.use_prefilter and source_type in self._databases

    def prefilter_lines(self, source_type: str, buffer: bytes) -> dict[int, int]:
        """Prefilter a buffer of newline-ended lines whose views are the lines themselves.

        Return, for each candidate line in line order, the offset of its newline mapped to the
        mask of the rules to confirm on it. Bit i of a mask is the i-th rule of
        `ranked_rules(source_type)`, and `rule_ids_of` turns a mask into ids for `confirm`.
        The caller guarantees that each line's view is its text (true for traditional and ISO
        syslog lines), because rules match views, and that no line is longer than
        `MAX_VIEW_CHARS`, whose views are cut. Call it only when `has_prefilter(source_type)`
        is true.
        """
        bit_of_pattern = self._bit_of_pattern.get(source_type)
        if bit_of_pattern is None:
            bit_of_pattern = [1 << position for position in self._rule_positions(source_type)]
            self._bit_of_pattern[source_type] = bit_of_pattern
        hits: list[tuple[int, int]] = []
        add_hit = hits.append

        def on_match(pattern_id: int, start: int, end: int, flags: int, context: object) -> None:
            add_hit((end, pattern_id))

        database = self._databases[source_type]()
        database.scan(buffer, match_event_handler=on_match)  # type: ignore[attr-defined]
        # As in `_prefilter`, a hit belongs to the line that contains its last byte. In end
        # order, a hit whose last byte is at or before the newline found last is on its line.
        hits.sort()
        candidates: dict[int, int] = {}
        find = buffer.find
        newline = -1
        mask = 0
        for end, pattern_id in hits:
            last_byte = end - 1 if end else 0
            if last_byte > newline:
                if mask:
                    candidates[newline] = mask
                newline = find(b"\n", last_byte)
                mask = 0
            mask |= bit_of_pattern[pattern_id]
        if mask:
            candidates[newline] = mask
        return candidates

    def prefilter_patterns(self, source_type: str) -> tuple[list[bytes], list[int], int]:
        """Return the expressions of a source type's Hyperscan database, with their flags.

        The second list contains each expression's rule position in `ranked_rules(source_type)`.
        Call it only when `has_prefilter(source_type)` is true.
        """
        entries = self._entries[source_type]
        expressions = [compiled.rule.patterns[index].encode() for compiled, index in entries]
        return expressions, self._rule_positions(source_type), _hyperscan_flags()

    def _rule_positions(self, source_type: str) -> list[int]:
        """Return the position in `ranked_rules` of the rule of each prefilter pattern."""
        rank = {id(compiled): index for index, compiled in enumerate(self._by_type[source_type])}
        return [rank[id(compiled)] for compiled, _ in self._entries[source_type]]

    def ranked_rules(
        self, source_type: str
    ) -> list[tuple[Rule, Sequence[Re2Pattern], Sequence[Re2Pattern]]]:
        """Return the rules of a source type, most severe first, with their patterns and ignores."""
        return [
            (compiled.rule, compiled.patterns, compiled.ignore)
            for compiled in self._by_type.get(source_type, [])
        ]

    def rule_ids_of(self, source_type: str, rule_mask: int) -> frozenset[int]:
        """Return the rule ids for `confirm` of a rule mask from `prefilter_lines`."""
        ids = self._ids_of_mask.get((source_type, rule_mask))
        if ids is None:
            rules = self._by_type.get(source_type, [])
            ids = frozenset(
                id(compiled) for index, compiled in enumerate(rules) if rule_mask >> index & 1
            )
            if len(self._ids_of_mask) >= _MAX_CACHED_MASKS:
                self._ids_of_mask.clear()
            self._ids_of_mask[(source_type, rule_mask)] = ids
        return ids

    def confirm(self, record: LogRecord, rule_ids: AbstractSet[int]) -> list[Finding]:
        """Run the rules of `rule_ids` on one record and return at most one finding per category."""
        return self._confirm(record, rule_ids)

    def prefilter_views(self, source_type: str, views: Sequence[str]) -> dict[int, set[int]]:
        """Prefilter the views of lines of one type in one scan.

        Return the index of each candidate view mapped to the rules to confirm on it with
        `confirm`. Call it only when `has_prefilter(source_type)` is true.
        """
        encoded = [detection_view(view).encode("utf-8", "replace") for view in views]
        starts = []
        offset = 0
        for chunk in encoded:
            starts.append(offset)
            offset += len(chunk) + 1
        entries = self._entries[source_type]
        hits: set[tuple[int, int]] = set()

        def on_match(pattern_id: int, start: int, end: int, flags: int, context: object) -> None:
            # A zero-width or line-spanning prefilter hit maps to the line it ends in; RE2 then
            # decides on that line alone, so a spurious candidate costs time but never a finding.
            line = bisect.bisect_right(starts, max(end - 1, 0)) - 1
            hits.add((line, pattern_id))

        database = self._databases[source_type]()
        database.scan(b"\n".join(encoded), match_event_handler=on_match)  # type: ignore[attr-defined]
        candidates: dict[int, set[int]] = {}
        for line, pattern_id in hits:
            candidates.setdefault(line, set()).add(id(entries[pattern_id][0]))
        return candidates

    def prefilter_repeated_views(
        self, source_type: str, views: Sequence[str]
    ) -> dict[int, set[int]]:
        """Prefilter views as `prefilter_views` does, scanning each distinct view only once.

        Access-log views repeat: many lines carry the same request, referer and agent. The
        candidate rules of a view depend on that view alone, so they are kept for later calls,
        up to `MAX_CACHED_VIEWS` views per source type.
        """
        known = self._view_candidates.setdefault(source_type, {})
        fresh = list(dict.fromkeys(view for view in views if view not in known))
        scanned = self.prefilter_views(source_type, fresh) if fresh else {}
        found = {view: frozenset(scanned.get(index, ())) for index, view in enumerate(fresh)}
        if len(known) + len(found) > MAX_CACHED_VIEWS:
            known.clear()
        if len(found) <= MAX_CACHED_VIEWS:
            known.update(found)
        candidates = {}
        for index, view in enumerate(views):
            rule_ids = known.get(view)
            if rule_ids is None:
                rule_ids = found[view]
            if rule_ids:
                candidates[index] = set(rule_ids)
        return candidates

    def _prefilter(
        self,
        source_type: str,
        records: Sequence[LogRecord],
        positions: list[int],
        candidates: dict[int, set[int]],
    ) -> None:
        views = [records[position].view for position in positions]
        found = self.prefilter_views(source_type, views)
        for line, rule_ids in found.items():
            candidates[positions[line]].update(rule_ids)

    def _confirm(self, record: LogRecord, rule_ids: AbstractSet[int]) -> list[Finding]:
        return [
            finding_of(rule, record, groups)
            for rule, groups in self.confirm_groups(record.view, record.source_type, rule_ids)
        ]

    def confirm_groups(
        self, view: str, source_type: str, rule_ids: AbstractSet[int]
    ) -> list[tuple[Rule, dict[str, str]]]:
        """Run the named rules on one view, most severe first; at most one match per category.

        Return each matching rule with its named groups. `rule_ids` come from
        `prefilter_views` or `rule_ids_of`; rules that do not apply to `source_type` are
        skipped.
        """
        matches = []
        seen_categories = set()
        allowed = self._ids_by_type.get(source_type, set())
        ordered = rule_ids if len(rule_ids) == 1 else sorted(rule_ids, key=self._rank.__getitem__)
        for rule_id in ordered:
            compiled = self._by_id[rule_id]
            if rule_id not in allowed or compiled.rule.category in seen_categories:
                continue
            groups = _match_groups(compiled, view)
            if groups is not None:
                matches.append((compiled.rule, groups))
                seen_categories.add(compiled.rule.category)
        return matches


def finding_of(rule: Rule, record: LogRecord, groups: dict[str, str]) -> Finding:
    """Return the finding of a rule that matched a record with these named groups."""
    # `count` is how many failed attempts the line stands for: 0 for a line that repeats
    # what another line of the same attempt already counted, N for "repeated N times".
    count = rule.count
    if rule.count_field and groups.get(rule.count_field, "").isdigit():
        count = min(int(groups[rule.count_field]), MAX_COUNT)
    return Finding(
        rule_id=rule.id,
        category=rule.category,
        severity=rule.severity,
        record=record,
        source_ip=source_address(record.source_type, record.client_ip, groups),
        user=groups.get("user") or None,
        count=count,
        fields=groups,
    )


def _match_groups(compiled: _CompiledRule, view: str) -> dict[str, str] | None:
    """Return the named groups of the rule's first matching pattern, or None (or ignored)."""
    view = detection_view(view)
    groups = None
    for pattern in compiled.patterns:
        groups = pattern.search_named(view)
        if groups is not None:
            break
    if groups is None:
        return None
    if any(ignore.matches(view) for ignore in compiled.ignore):
        return None
    return groups


def source_address(source_type: str, client_ip: str | None, groups: dict[str, str]) -> str | None:
    """Return a finding's source address: the server-written client field, else the rule's group."""
    if source_type in ATTRIBUTED_BY_SERVER:
        return memoised_clean_source(client_ip)
    return memoised_clean_source(groups.get("source_ip"))
