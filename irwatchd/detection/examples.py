"""Run each rule's embedded examples against the compiled detector."""

from __future__ import annotations

from datetime import UTC, datetime

from irwatchd.detection.engine import Detector
from irwatchd.errors import Problem
from irwatchd.parsing.dispatch import parse_line

# Examples without a year are read as if it were this day, so their results never depend on
# the date the check runs.
_EXAMPLE_NOW = datetime(2024, 12, 31, tzinfo=UTC)


def check_examples(detector: Detector) -> list[Problem]:
    """Return a problem for every example that does not behave as its rule says."""
    problems = []
    for rule in detector.rules:
        where = f"rules.{rule.id}.examples"
        for example in rule.match_examples:
            source_type = example.source_type or rule.source_types[0]
            record = parse_line(example.line, source_type, _EXAMPLE_NOW, line_number=1)
            found = [f for f in detector.detect([record]) if f.rule_id == rule.id]
            if not found:
                others = [f.rule_id for f in detector.detect([record])]
                detail = f" (matched by {others} instead)" if others else ""
                problems.append(
                    Problem(rule.path, rule.line, where,
                            f"example did not match{detail}: {example.line!r}")
                )  # fmt: skip
                continue
            actual = found[0].to_detect_json() | {"count": found[0].count} | found[0].fields
            for key, expected in example.fields.items():
                got = actual.get(key)
                if got != expected and not (expected is not None and str(got) == str(expected)):
                    problems.append(
                        Problem(rule.path, rule.line, where,
                                f"field {key!r} is {got!r}, expected {expected!r}, "
                                f"in {example.line!r}")
                    )  # fmt: skip
        for line in rule.no_match_examples:
            record = parse_line(line, rule.source_types[0], _EXAMPLE_NOW, line_number=1)
            if any(f.rule_id == rule.id for f in detector.detect([record])):
                problems.append(
                    Problem(rule.path, rule.line, where, f"no_match example matched: {line!r}")
                )
    return problems
