"""The C++ Confirmer gives the daemon the same findings as `Detector.confirm`."""

from __future__ import annotations

import gc
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from irwatchd.config import load_config
from irwatchd.detection import batch, native_confirm, native_rows
from irwatchd.detection.batch import detect_file
from irwatchd.detection.engine import Detector
from irwatchd.detection.finding import Finding
from irwatchd.detection.native_confirm import native_confirmer
from irwatchd.detection.rule import Rule, expand_rule_paths
from irwatchd.detection.rules import load_rules
from tests.helpers import CONFIG
from tests.test_detect_rows import _corpus_lines, _header_variants, _hostile_lines

MOMENT = datetime(2026, 12, 4, 12, tzinfo=UTC)

pytestmark = pytest.mark.skipif(
    not native_rows.native_available(),
    reason="the _rawrows extension is not built (needs g++, libhyperscan-dev and libre2-dev)",
)


@pytest.fixture(scope="module")
def detector() -> Detector:
    loaded = load_config(CONFIG)
    return Detector(load_rules(expand_rule_paths(loaded.config.rules.files, loaded.base)))


def _findings(detector: Detector, path: Path, source_type: str) -> list[Finding]:
    with path.open("rb") as handle:
        return list(detect_file(detector, handle, source_type, str(path), 300, now=MOMENT))


def _compare(
    detector: Detector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: list[bytes]
) -> list[Finding]:
    """Assert both paths find the same in these lines; return the findings."""
    log = tmp_path / "mixed.log"
    log.write_bytes(b"\n".join(lines) + b"\n")
    confirmed = []
    confirmer = native_confirmer(detector)
    assert confirmer is not None
    original = confirmer.confirm

    def counting(*args: object) -> list[Finding] | None:
        found = original(*args)  # type: ignore[arg-type]
        confirmed.append(found is not None)
        return found

    with monkeypatch.context() as patch:
        patch.setattr(confirmer, "confirm", counting)
        native = _findings(detector, log, "syslog")
    with monkeypatch.context() as patch:
        patch.setattr(batch, "native_confirmer", lambda _: None)
        expected = _findings(detector, log, "syslog")

    assert expected, "nothing was found; the comparison would prove nothing"
    assert any(confirmed), "no line went through the Confirmer"
    assert native == expected
    return native


def test_confirmer_matches_on_corpus(
    detector: Detector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = _corpus_lines("auth.jsonl") + _corpus_lines("privesc.jsonl") + _hostile_lines()
    found = _compare(detector, tmp_path, monkeypatch, lines)

    assert any(finding.fields for finding in found)


def test_confirmer_matches_on_odd_headers(
    detector: Detector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeds = [line.decode() for line in _corpus_lines("auth.jsonl")]
    lines = [variant.encode() for variant in _header_variants(random.Random(61), seeds, 5_000)]
    _compare(detector, tmp_path, monkeypatch, lines)


def test_confirmer_matches_on_multibyte_edits(
    detector: Detector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Multibyte characters and field words written anywhere, groups included. Each edit keeps
    # the line valid UTF-8 without control characters, so the blocks stay raw syslog and every
    # candidate reaches the Confirmer. Invalid bytes are in the corpus test's hostile lines.
    seeds = _corpus_lines("auth.jsonl") + _corpus_lines("privesc.jsonl")
    rng = random.Random(67)
    inserts = ["é", "€", "\U0001f511", "\u0663", " from ", " port 1 ", "[", "]", ":", " ", "x"]
    lines = []
    for _ in range(5_000):
        line = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            position = rng.randrange(len(line) + 1)
            while position < len(line) and 0x80 <= line[position] < 0xC0:
                position -= 1  # not inside a multibyte character
            line[position:position] = rng.choice(inserts).encode()
        lines.append(bytes(line))
    _compare(detector, tmp_path, monkeypatch, lines)


def test_confirmer_leaves_long_lines_to_python(detector: Detector, tmp_path: Path) -> None:
    confirmer = native_confirmer(detector)
    assert confirmer is not None
    line = "Mar  8 15:14:19 bastion sshd[1]: Failed password for " + "x" * 40_000
    line += " from 203.0.113.7 port 22 ssh2"
    record = batch.parse_line(line, "syslog", MOMENT)
    mask = detector.prefilter_lines("syslog", line.encode() + b"\n")[len(line)]

    # Rules see such a line cut to its head and tail, which only `Detector.confirm` builds.
    assert confirmer.confirm(record, line.encode(), mask) is None


def test_confirmer_keeps_group_order_and_count(detector: Detector) -> None:
    # A "message repeated N times" line fills the count group, which sets the finding's count.
    line = (
        "Mar  8 15:14:19 bastion sshd[9]: message repeated 3 times: [ Failed password for "
        "root from 198.51.100.4 port 22 ssh2]"
    )
    record = batch.parse_line(line, "syslog", MOMENT)
    mask = detector.prefilter_lines("syslog", line.encode() + b"\n")[len(line)]
    confirmer = native_confirmer(detector)
    assert confirmer is not None

    native = confirmer.confirm(record, line.encode(), mask)
    expected = detector.confirm(record, detector.rule_ids_of("syslog", mask))

    assert native == expected
    assert native
    assert native[0].count == 3
    assert list(native[0].fields) == list(expected[0].fields)


def test_confirmer_freed_with_its_detector() -> None:
    loaded = load_config(CONFIG)
    rules: list[Rule] = load_rules(expand_rule_paths(loaded.config.rules.files, loaded.base))
    detector = Detector(rules)
    assert native_confirmer(detector) is not None
    before = len(native_confirm._confirmers)

    del detector
    gc.collect()

    assert len(native_confirm._confirmers) == before - 1
