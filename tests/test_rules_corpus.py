"""Recall and false-positive floors on the labelled evaluation corpus, so a rule regression fails.

The floors sit at or a little below the measured figures of the shipped rules (see
docs/detection.md) and never below the OWASP CRS 4 paranoia-level-1 figures for the same
web lines. The corpus lives outside the repository; without it these tests are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from irwatchd.config import load_config
from irwatchd.detection.engine import Detector
from irwatchd.detection.evaluation import Evaluation, evaluate
from irwatchd.detection.loader import build_detector

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"

# CRS 4 PL1 recall on the same web lines, which the detector must not fall below.
WEB_RECALL_FLOORS = {
    "sqli": 0.871,
    "xss": 0.945,
    "path_traversal": 0.834,
    "cmd_injection": 0.694,
    "log4shell": 0.953,
    "shellshock": 1.0,
}


def corpus_file(name: str) -> Path:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"evaluation corpus not found at {path}; it is kept outside the repository")
    return path


@pytest.fixture(scope="module")
def detector() -> Detector:
    return build_detector(load_config(ROOT / "etc" / "irwatchd.yaml"))


@pytest.fixture(scope="module")
def web(detector: Detector) -> Evaluation:
    return evaluate(detector, corpus_file("web.jsonl"))


@pytest.fixture(scope="module")
def auth(detector: Detector) -> Evaluation:
    return evaluate(detector, corpus_file("auth.jsonl"))


@pytest.fixture(scope="module")
def privesc(detector: Detector) -> Evaluation:
    return evaluate(detector, corpus_file("privesc.jsonl"))


def recall(result: Evaluation, label: str) -> float:
    return result.caught_by_label[label] / result.attacks_by_label[label]


def false_positive_rate(result: Evaluation, groups: list[str]) -> float:
    benign = sum(result.benign_by_group[group] for group in groups)
    flagged = sum(result.flagged_by_group[group] for group in groups)
    return flagged / benign


def test_web_overall_recall(web: Evaluation) -> None:
    assert web.summary()["attack_recall"] >= 0.95


@pytest.mark.parametrize("label", sorted(WEB_RECALL_FLOORS))
def test_web_recall_not_below_crs(web: Evaluation, label: str) -> None:
    assert recall(web, label) >= WEB_RECALL_FLOORS[label]


def test_web_false_positives_overall(web: Evaluation) -> None:
    assert web.summary()["false_positive_rate"] <= 0.015


def test_web_false_positives_ordinary_traffic(web: Evaluation) -> None:
    groups = ["real_traffic", "Morzeux/HttpParamsDataset"]
    assert false_positive_rate(web, groups) <= 0.005


def test_web_every_finding_names_client(web: Evaluation) -> None:
    assert web.wrong_source == []


@pytest.mark.parametrize(
    "label", ["failed_login", "invalid_user", "brute_force", "break_in_warning", "ssh_scan"]
)
def test_auth_every_attack_found(auth: Evaluation, label: str) -> None:
    assert recall(auth, label) == 1.0


def test_auth_no_false_positives(auth: Evaluation) -> None:
    assert auth.false_positives == []


def read_items(name: str) -> list[dict[str, Any]]:
    with corpus_file(name).open(encoding="utf-8") as handle:
        return [json.loads(text) for text in handle if text.strip()]


def test_auth_source_wrong_only_without_address(auth: Evaluation) -> None:
    # Lines marked ip_from_pid_context carry no address, because the corpus took it from
    # another line of the same sshd process. Every other line must name its own address.
    items = read_items("auth.jsonl")
    wrong = [
        entry
        for entry in auth.wrong_source
        if not items[entry["line_number"] - 1].get("ip_from_pid_context")
    ]
    assert wrong == []


def test_privesc_real_lines_all_found(privesc: Evaluation) -> None:
    items = read_items("privesc.jsonl")
    missed = [entry for entry in privesc.misses if not items[entry["line_number"] - 1]["synthetic"]]
    assert missed == []


def test_privesc_synthetic_recall(privesc: Evaluation) -> None:
    assert privesc.summary()["attack_recall"] >= 0.95


def test_privesc_false_positives(privesc: Evaluation) -> None:
    assert privesc.summary()["false_positive_rate"] <= 0.01
