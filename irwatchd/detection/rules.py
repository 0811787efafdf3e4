"""Rule files: the YAML schema, loading with file and line in every error, and overrides."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from irwatchd.detection.finding import CATEGORIES, SEVERITIES
from irwatchd.detection.rule import Rule
from irwatchd.errors import ConfigError, Problem
from irwatchd.parsing.record import SOURCE_TYPES
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


class MatchExample(BaseModel):
    """A line the rule must match, with the fields it must extract (null means absent)."""

    model_config = ConfigDict(extra="forbid")

    line: str
    source_type: SourceType | None = None
    fields: dict[str, str | int | None] = Field(default_factory=dict)


class Examples(BaseModel):
    """Lines a rule must match and lines it must not match."""

    model_config = ConfigDict(extra="forbid")

    match: list[MatchExample | str] = Field(default_factory=list)
    no_match: list[str] = Field(default_factory=list)


class RuleSpec(BaseModel):
    """One rule as written in a rule file."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    category: Category
    severity: Severity
    severity_reason: str = Field(min_length=1)
    description: str = Field(min_length=1)
    source_types: list[SourceType] = Field(min_length=1)
    pattern: str | list[str]
    ignore: list[str] = Field(default_factory=list)
    count_field: str | None = None
    count: int = Field(default=1, ge=0, le=1000)
    references: list[str] = Field(default_factory=list)
    examples: Examples = Field(default_factory=Examples)
    override: bool = False

    @field_validator("pattern")
    @classmethod
    def _patterns_not_empty(cls, value: str | list[str]) -> str | list[str]:
        patterns = [value] if isinstance(value, str) else value
        if not patterns or any(not pattern for pattern in patterns):
            raise ValueError("must be a non-empty pattern or a non-empty list of them")
        return value


class RuleFile(BaseModel):
    """The top level of a rule file."""

    model_config = ConfigDict(extra="forbid")

    rules: list[RuleSpec]


def _describe(error: ErrorDetails) -> str:
    message = str(error["msg"])
    expected = error.get("ctx", {}).get("expected")
    if error["type"] == "extra_forbidden":
        return "unknown key; remove it or check its spelling"
    if expected:
        return f"invalid value {error.get('input')!r}; allowed: {expected}"
    return f"{message} (got {error.get('input')!r})"


def validation_problems(
    path: Path, document: Any, error: ValidationError, prefix: tuple[int | str, ...] = ()
) -> list[Problem]:
    """Turn pydantic errors into problems that name the file, line and dotted key."""
    problems = []
    for item in error.errors():
        location = prefix + tuple(part for part in item["loc"] if not _is_union_tag(part))
        key = ".".join(str(part) for part in location)
        problems.append(Problem(str(path), line_of(document, location), key, _describe(item)))
    return problems


def _is_union_tag(part: int | str) -> bool:
    # pydantic adds the member type of a union (`str`, `MatchExample`) to the location.
    return isinstance(part, str) and (part[:1].isupper() or part in ("str", "list[str]"))


def _load_file(path: Path) -> list[Rule]:
    document = load_yaml(path)
    if document is None:
        return []
    try:
        parsed = RuleFile.model_validate(document)
    except ValidationError as error:
        raise ConfigError(validation_problems(path, document, error)) from None
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
