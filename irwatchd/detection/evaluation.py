"""Score the detector on a labelled JSONL corpus: recall per label, false positives, attribution.

Only each object's `line` is shown to the detector. `label`, `malicious`, `ip` and the
provenance fields are read only to score the result.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from irwatchd.config import CorrelationSpec
from irwatchd.correlation.windows import SlidingWindows
from irwatchd.detection.addresses import clean_source
from irwatchd.detection.engine import Detector
from irwatchd.detection.finding import Finding
from irwatchd.detection.process_context import ProcessContext
from irwatchd.errors import DataError, InputError
from irwatchd.parsing.dispatch import parse_line

_BATCH = 4096


@dataclass
class Evaluation:
    """Counts gathered while scoring one corpus file."""

    attacks_by_label: Counter[str] = field(default_factory=Counter)
    caught_by_label: Counter[str] = field(default_factory=Counter)
    benign_by_group: Counter[str] = field(default_factory=Counter)
    flagged_by_group: Counter[str] = field(default_factory=Counter)
    attributed: int = 0
    attribution_checked: int = 0
    misses: list[dict[str, Any]] = field(default_factory=list)
    false_positives: list[dict[str, Any]] = field(default_factory=list)
    wrong_source: list[dict[str, Any]] = field(default_factory=list)
    brute_force_expected: set[str] | None = None
    brute_force_found: set[str] = field(default_factory=set)

    def summary(self) -> dict[str, Any]:
        """Return the figures as one JSON-ready object."""
        attacks = sum(self.attacks_by_label.values())
        caught = sum(self.caught_by_label.values())
        benign = sum(self.benign_by_group.values())
        flagged = sum(self.flagged_by_group.values())
        return {
            "attack_lines": attacks,
            "attack_recall": _ratio(caught, attacks),
            "recall_by_label": {
                label: {"lines": total, "recall": _ratio(self.caught_by_label[label], total)}
                for label, total in sorted(self.attacks_by_label.items())
            },
            "benign_lines": benign,
            "false_positive_rate": _ratio(flagged, benign),
            "false_positive_rate_by_group": {
                group: {"lines": total, "rate": _ratio(self.flagged_by_group[group], total)}
                for group, total in sorted(self.benign_by_group.items())
            },
            "source_checked": self.attribution_checked,
            "correct_source_rate": _ratio(self.attributed, self.attribution_checked),
            "brute_force_sources": self._brute_force_summary(),
        }

    def _brute_force_summary(self) -> dict[str, Any] | None:
        if self.brute_force_expected is None:
            return None
        expected, found = self.brute_force_expected, self.brute_force_found
        return {
            "expected": len(expected),
            "found": len(found),
            "missing": sorted(expected - found),
            "extra": sorted(found - expected),
        }


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def _benign_group(item: dict[str, Any]) -> str:
    if item.get("hard_negative"):
        return "hard_negative"
    if item.get("real_traffic"):
        return "real_traffic"
    source = str(item.get("source", ""))
    return source.split("@", 1)[0] if "@" in source else "other"


def _read_corpus(path: Path) -> list[dict[str, Any]]:
    try:
        handle = path.open(encoding="utf-8")
    except OSError as error:
        raise InputError(f"cannot read {str(path)!r}: {error.strerror}") from None
    items = []
    with handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                item = json.loads(text)
            except ValueError as error:
                raise DataError(f"{path}:{number}: invalid JSON ({error}); fix the line") from None
            if not isinstance(item, dict) or not isinstance(item.get("line"), str):
                raise DataError(f'{path}:{number}: expected an object with a "line" string')
            items.append(item)
    return items


def evaluate(
    detector: Detector,
    path: Path,
    source_type: str = "auto",
    correlation: list[CorrelationSpec] | None = None,
) -> Evaluation:
    """Detect every corpus line and score the findings against the labels.

    With `correlation` given and a corpus that labels brute-force bursts
    (`brute_force_burst`), the windows run over the findings in line order with the times the
    lines carry, and the sources they flag are compared with the labelled ones.
    """
    items = _read_corpus(path)
    now = datetime.now(UTC)
    findings: dict[int, list[Finding]] = defaultdict(list)
    context = ProcessContext()
    for start in range(0, len(items), _BATCH):
        chunk = items[start : start + _BATCH]
        records = [
            parse_line(item["line"], source_type, now, line_number=start + index + 1)
            for index, item in enumerate(chunk)
        ]
        for finding in context.attribute(detector.detect(records)):
            findings[finding.record.line_number].append(finding)
    result = Evaluation()
    for number, item in enumerate(items, start=1):
        _score(result, number, item, findings.get(number, []))
    if correlation and any("brute_force_burst" in item for item in items):
        result.brute_force_expected = {
            source
            for item in items
            if item.get("brute_force_burst") and (source := clean_source(item.get("ip")))
        }
        windows = SlidingWindows(correlation)
        for number in sorted(findings):
            for finding in findings[number]:
                moment = finding.record.time or now
                for correlated in windows.observe(finding, moment):
                    if correlated.category == "brute_force" and correlated.source_ip:
                        result.brute_force_found.add(correlated.source_ip)
    return result


def _score(result: Evaluation, number: int, item: dict[str, Any], found: list[Finding]) -> None:
    brief = {"line_number": number, "label": item.get("label"), "line": item["line"]}
    if not item.get("malicious"):
        group = _benign_group(item)
        result.benign_by_group[group] += 1
        if found:
            result.flagged_by_group[group] += 1
            result.false_positives.append(brief | {"rules": [f.rule_id for f in found]})
        return
    label = str(item.get("label"))
    result.attacks_by_label[label] += 1
    if not found:
        result.misses.append(brief)
        return
    result.caught_by_label[label] += 1
    expected = clean_source(item.get("ip")) if item.get("ip") else None
    if expected is not None:
        result.attribution_checked += 1
        if any(finding.source_ip == expected for finding in found):
            result.attributed += 1
        else:
            sources = [finding.source_ip for finding in found]
            result.wrong_source.append(brief | {"expected": expected, "found": sources})


def format_table(name: str, summary: dict[str, Any]) -> str:
    """Render a summary as the plain-text table `irwatchd eval` prints."""

    def percent(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:.1f}%"

    rows = [f"{name}", f"{'label':<24}{'lines':>8}{'recall':>9}"]
    for label, figures in summary["recall_by_label"].items():
        rows.append(f"{label:<24}{figures['lines']:>8}{percent(figures['recall']):>9}")
    rows.append(
        f"{'all attacks':<24}{summary['attack_lines']:>8}{percent(summary['attack_recall']):>9}"
    )
    rows.append("")
    rows.append(f"{'benign group':<24}{'lines':>8}{'flagged':>9}")
    for group, figures in summary["false_positive_rate_by_group"].items():
        rows.append(f"{group:<24}{figures['lines']:>8}{percent(figures['rate']):>9}")
    rows.append(
        f"{'all benign':<24}{summary['benign_lines']:>8}"
        f"{percent(summary['false_positive_rate']):>9}"
    )
    rows.append("")
    rows.append(
        f"correct source address: {percent(summary['correct_source_rate'])} "
        f"of {summary['source_checked']} detected lines with a labelled address"
    )
    brute = summary.get("brute_force_sources")
    if brute is not None:
        rows.append(
            f"brute_force sources: {brute['found']} found, {brute['expected']} labelled, "
            f"{len(brute['missing'])} missing, {len(brute['extra'])} extra"
        )
    return "\n".join(rows)


def listing(result: Evaluation) -> Iterable[str]:
    """Yield the misses, false positives and wrong sources, one JSON object per line."""
    for kind, entries in (
        ("miss", result.misses),
        ("false_positive", result.false_positives),
        ("wrong_source", result.wrong_source),
    ):
        for entry in entries:
            yield json.dumps({"kind": kind} | entry)
