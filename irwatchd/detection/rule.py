"""The validated rule the engine compiles, in a module of its own: `detect` can then read rules
from its settings cache without importing the rule file schema."""

from __future__ import annotations

import glob
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from irwatchd.detection.rules import MatchExample


@dataclass(frozen=True, slots=True)
class Rule:
    """A validated rule, ready for the engine, with the place it was defined."""

    id: str
    category: str
    severity: str
    severity_reason: str
    description: str
    source_types: tuple[str, ...]
    patterns: tuple[str, ...]
    ignore: tuple[str, ...]
    count_field: str | None
    count: int
    references: tuple[str, ...]
    match_examples: tuple[MatchExample, ...]
    no_match_examples: tuple[str, ...]
    path: str
    line: int | None
    override: bool = False


def expand_rule_paths(patterns: Iterable[str], base: Path) -> list[Path]:
    """Expand rule file globs relative to `base`, sorted so load order is stable.

    A file that two globs match is loaded once, where the first one lists it.
    """
    paths: dict[Path, None] = {}
    for pattern in patterns:
        full = pattern if Path(pattern).is_absolute() else str(base / pattern)
        paths.update((Path(found), None) for found in sorted(glob.glob(full)))
    return list(paths)
