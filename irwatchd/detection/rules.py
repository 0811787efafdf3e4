"""Rule files: the YAML schema, loading with file and line in every error, and overrides."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

from msgspec import Meta, Struct, field

from irwatchd.detection.finding import CATEGORIES, SEVERITIES
from irwatchd.detection.rule import Rule
from irwatchd.errors import ConfigError, Problem
from irwatchd.parsing.record import SOURCE_TYPES
from irwatchd.schema import convert
from irwatchd.yamlload import line_of, load_yaml

Category = Literal[
    "failed_login", "brute_force", "privilege_escalation", "sqli", "xss", "path_traversal",
    "remote_file_inclusion", "command_injection", "code_injection", "jndi_injection", "ssrf",
    "protocol_attack", "scanner",
]  # fmt: skip
Severity = Literal["low", "medium", "high", "critical"]
SourceType = Literal["syslog", "access_log", "error_log", "json"]

assert set(Category.__args__) == set(CATEGORIES)  # type: ignore[attr-defined]
assert set(Severity.__args__) == set(SEVERITIES)  # type: ignore[attr-defined]
assert set(SourceType.__args__) == set(SOURCE_TYPES)  # type: ignore[attr-defined]


class _Spec(Struct, forbid_unknown_fields=True, kw_only=True):
    """A part of a rule file: unknown keys are errors."""


class MatchExample(_Spec):
    """A line the rule must match, with the fields it must extract (null means absent)."""

    line: str
    source_type: SourceType | None = None
    fields: dict[str, str | int | None] = field(default_factory=dict)


class Examples(_Spec):
    """Lines a rule must match and lines it must not match."""

    match: list[MatchExample | str] = field(default_factory=list)
    no_match: list[str] = field(default_factory=list)


class RuleSpec(_Spec):
    """One rule as written in a rule file."""

    id: Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
    category: Category
    severity: Severity
    severity_reason: Annotated[str, Meta(min_length=1)]
    description: Annotated[str, Meta(min_length=1)]
    source_types: Annotated[list[SourceType], Meta(min_length=1)]
    pattern: str | list[str]
    ignore: list[str] = field(default_factory=list)
    count_field: str | None = None
    count: Annotated[int, Meta(ge=0, le=1000)] = 1
    references: list[str] = field(default_factory=list)
    examples: Examples = field(default_factory=Examples)
    override: bool = False

    def __post_init__(self) -> None:
        patterns = [self.pattern] if isinstance(self.pattern, str) else self.pattern
        if not patterns or any(not pattern for pattern in patterns):
            raise ValueError("pattern: must be a non-empty pattern or a non-empty list of them")


class RuleFile(_Spec):
    """The top level of a rule file."""

    rules: list[RuleSpec]


def _load_file(path: Path) -> list[Rule]:
    document = load_yaml(path)
    if document is None:
        return []
    parsed = convert(document, RuleFile, path)
    rules = []
    for index, spec in enumerate(parsed.rules):
        patterns = (spec.pattern,) if isinstance(spec.pattern, str) else tuple(spec.pattern)
        rules.append(
            Rule(
                id=spec.id,
                category=spec.category,
                severity=spec.severity,
                severity_reason=spec.severity_reason,
                description=spec.description,
                source_types=tuple(spec.source_types),
                patterns=patterns,
                ignore=tuple(spec.ignore),
                count_field=spec.count_field,
                count=spec.count,
                references=tuple(spec.references),
                match_examples=tuple(
                    example if isinstance(example, MatchExample) else MatchExample(line=example)
                    for example in spec.examples.match
                ),
                no_match_examples=tuple(spec.examples.no_match),
                path=str(path),
                line=line_of(document, ("rules", index)),
                override=spec.override,
            )
        )
    return rules


def load_rules(paths: Iterable[Path], disabled: Iterable[str] = ()) -> list[Rule]:
    """Load rule files in order; a later rule replaces an earlier one only with `override: true`."""
    by_id: dict[str, Rule] = {}
    problems: list[Problem] = []
    for path in paths:
        try:
            loaded = _load_file(path)
        except ConfigError as error:
            problems.extend(error.problems)
            continue
        for rule in loaded:
            previous = by_id.get(rule.id)
            if previous is not None and not rule.override:
                problems.append(
                    Problem(
                        rule.path, rule.line, f"rules.{rule.id}",
                        f"duplicate rule id {rule.id!r} (first defined at "
                        f"{previous.path}:{previous.line}); rename it, or set `override: true` "
                        "to replace the earlier rule",
                    )
                )  # fmt: skip
                continue
            by_id[rule.id] = rule
    if problems:
        raise ConfigError(problems)
    disabled_ids = set(disabled)
    return [rule for rule in by_id.values() if rule.id not in disabled_ids]
