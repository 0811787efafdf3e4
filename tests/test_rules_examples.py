"""The shipped rule files: schema, conventions, and every rule's embedded examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from irwatchd.config import load_config
from irwatchd.detection.engine import Detector
from irwatchd.detection.examples import check_examples
from irwatchd.detection.loader import build_detector

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "etc" / "irwatchd.yaml"

# sshd and PAM lines that say the retry limit was hit may be failed_login; brute_force itself
# comes only from correlation, never from a rule.
FORBIDDEN_CATEGORIES = {"brute_force"}


@pytest.fixture(scope="module")
def detector() -> Detector:
    return build_detector(load_config(CONFIG))


def test_rule_examples_pass(detector: Detector) -> None:
    problems = check_examples(detector)
    assert problems == [], "\n".join(str(problem) for problem in problems)


def test_every_rule_has_match_example(detector: Detector) -> None:
    missing = [rule.id for rule in detector.rules if not rule.match_examples]
    assert missing == []


def test_no_rule_emits_brute_force(detector: Detector) -> None:
    offenders = [rule.id for rule in detector.rules if rule.category in FORBIDDEN_CATEGORIES]
    assert offenders == []


def test_every_rule_has_references(detector: Detector) -> None:
    missing = [rule.id for rule in detector.rules if not rule.references]
    assert missing == []


@pytest.mark.parametrize(
    ("category", "severity"),
    [
        ("failed_login", "low"),
        ("xss", "medium"),
        ("sqli", "high"),
        ("path_traversal", "high"),
        ("jndi_injection", "critical"),
    ],
)
def test_default_severity_of_main_rules(detector: Detector, category: str, severity: str) -> None:
    # The main rule of each category keeps the documented default; narrower rules may differ
    # and say why in severity_reason.
    severities = {rule.severity for rule in detector.rules if rule.category == category}
    assert severity in severities


def test_rule_files_name_example_sources() -> None:
    # Example lines are synthetic (documentation addresses) unless the file names the
    # upstream source and licence of a copied line.
    for path in sorted((ROOT / "etc" / "rules.d").glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        assert "synthetic" in text or "licence" in text.lower(), path.name
