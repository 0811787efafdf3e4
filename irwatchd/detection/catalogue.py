"""Print the rule catalogue as Markdown: one table row per rule, read from the rule files.

Run `python -m irwatchd.detection.catalogue [CONFIG]` from the repository root; CONFIG
defaults to the checkout's etc/irwatchd.yaml, and the rule files are the ones it names.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from irwatchd.config import load_config
from irwatchd.config_paths import default_config_path
from irwatchd.detection.rule import Rule, expand_rule_paths
from irwatchd.detection.rules import load_rules
from irwatchd.errors import ConfigError

_SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def _cell(text: str) -> str:
    # A pipe would end the Markdown cell early, and a newline would end the row.
    return text.replace("|", "\\|").replace("\n", " ").strip()


def catalogue_rows(rules: Iterable[Rule]) -> list[str]:
    """Return the Markdown table rows for `rules`, grouped by rule file in load order."""
    rows = [
        "| id | category | severity | source types | description | references |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for rule in rules:
        references = ", ".join(rule.references) or "-"
        rows.append(
            f"| `{rule.id}` | {rule.category} | {rule.severity} | "
            f"{', '.join(rule.source_types)} | {_cell(rule.description)} | {_cell(references)} |"
        )
    return rows


def severity_summary(rules: Iterable[Rule]) -> list[str]:
    """Return one Markdown line per category: how many rules it has at each severity."""
    counts: dict[str, dict[str, int]] = {}
    for rule in rules:
        per_severity = counts.setdefault(rule.category, {})
        per_severity[rule.severity] = per_severity.get(rule.severity, 0) + 1
    lines = []
    for category in sorted(counts):
        parts = sorted(counts[category].items(), key=lambda item: _SEVERITY_ORDER[item[0]])
        text = ", ".join(f"{number} {severity}" for severity, number in parts)
        lines.append(f"- {category}: {text}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Print the catalogue of the rules a config loads; exit 78 when the rules are invalid."""
    arguments = sys.argv[1:] if argv is None else argv
    config_path = Path(arguments[0]) if arguments else default_config_path()
    try:
        loaded = load_config(config_path)
        paths = expand_rule_paths(loaded.config.rules.files, loaded.base)
        rules = load_rules(paths, loaded.config.rules.disabled)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return 78
    files = ", ".join(f"`{path.name}`" for path in paths)
    print(f"{len(rules)} rules from {files}.")
    print()
    print("\n".join(severity_summary(rules)))
    print()
    print("\n".join(catalogue_rows(rules)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
