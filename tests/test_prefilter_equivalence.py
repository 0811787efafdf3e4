"""The fast paths find exactly what the rules alone find.

Three ways to run the same rules over the same file must agree finding for finding:
`Detector(rules, prefilter=False)` on every parsed line (the reference), the Hyperscan
prefilter over parsed batches (`detect_stream`), and the raw-block syslog path (`detect_file`).
The evaluation corpus supplies the lines; a second file mixes in the shapes that force the
raw-block path to fall back (CR, invalid UTF-8, over-long lines, RFC 5424, JSON, empty lines).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path

import pytest

from irwatchd.config import load_config
from irwatchd.detection import batch
from irwatchd.detection.batch import StreamTotals, detect_file, detect_stream, records_from
from irwatchd.detection.engine import Detector, hyperscan
from irwatchd.detection.finding import Finding
from irwatchd.detection.rules import expand_rule_paths, load_rules
from irwatchd.parsing import syslog
from irwatchd.sources.lines import iter_lines
from tests.helpers import CONFIG, CORPUS

pytestmark = pytest.mark.skipif(hyperscan is None, reason="hyperscan is not installed")

CORPUS_FILES = ("auth.jsonl", "privesc.jsonl", "web.jsonl")


@pytest.fixture(scope="module")
def detectors() -> tuple[Detector, Detector]:
    loaded = load_config(CONFIG)
    rules = load_rules(expand_rule_paths(loaded.config.rules.files, loaded.base))
    return Detector(rules, prefilter=False), Detector(rules, prefilter=True)


def _key(finding: Finding) -> tuple[object, ...]:
    record = finding.record
    return (
        record.line_number, record.offset, record.source_type, record.time, record.view,
        finding.rule_id, finding.category, finding.severity, finding.source_ip, finding.user,
        finding.count, tuple(sorted(finding.fields.items())),
    )  # fmt: skip


def _keys(findings: Iterable[Finding]) -> list[tuple[object, ...]]:
    return [_key(finding) for finding in findings]


def _reference(
    detector: Detector, path: Path, source_type: str, max_line_bytes: int
) -> list[Finding]:
    with path.open("rb") as handle:
        records = records_from(iter_lines(handle, max_line_bytes), source_type, str(path))
        return list(detect_stream(detector, records))


def _fast(
    detector: Detector, path: Path, source_type: str, max_line_bytes: int
) -> tuple[list[Finding], StreamTotals]:
    totals = StreamTotals()
    with path.open("rb") as handle:
        found = list(
            detect_file(detector, handle, source_type, str(path), max_line_bytes, totals=totals)
        )
    return found, totals


def _corpus_lines(name: str) -> list[str]:
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"evaluation corpus file {path} is absent")
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line)["line"] for line in handle]


@pytest.mark.parametrize("name", CORPUS_FILES)
@pytest.mark.parametrize("source_type", ["auto", "typed"])
def test_corpus_findings_match_rules_alone(
    detectors: tuple[Detector, Detector], tmp_path: Path, name: str, source_type: str
) -> None:
    plain, prefiltered = detectors
    kind = (
        source_type
        if source_type == "auto"
        else ("access_log" if name == "web.jsonl" else "syslog")
    )
    lines = _corpus_lines(name)
    log = tmp_path / "corpus.log"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")

    expected = _keys(_reference(plain, log, kind, 65536))
    batched = _keys(_reference(prefiltered, log, kind, 65536))
    fast, totals = _fast(prefiltered, log, kind, 65536)

    assert expected, f"the rules found nothing in {name}; the comparison would prove nothing"
    assert batched == expected
    assert _keys(fast) == expected
    assert totals.lines == len(lines)


def _awkward_lines(rng: random.Random) -> list[bytes]:
    """Corpus auth lines mixed with every shape that must leave the raw-block path."""
    auth = [line.encode() for line in _corpus_lines("auth.jsonl")]
    failure = (
        b"Mar  8 15:14:19 bastion sshd[811]: Failed password for root from 203.0.113.9 port 22 ssh2"
    )
    awkward = [
        failure + b"\r",
        b"Mar  8 15:14:19 bastion sshd[811]: Failed password for r\xffot from 203.0.113.8 port 22 ssh2",
        b"<38>1 2024-03-08T15:14:19Z bastion sshd 811 - - Failed password for root from 203.0.113.7 port 22 ssh2",
        b"2024-03-08T15:14:19.123456+00:00 bastion sshd[811]: Failed password for root from 192.0.2.7 port 22 ssh2",
        b'{"MESSAGE": "Failed password for root from 192.0.2.6 port 22 ssh2", "SYSLOG_IDENTIFIER": "sshd", "_PID": "9"}',
        b"",
        failure[:60] + b"x" * 400 + failure[60:],
        failure + b" " + b"y" * 400,
    ]
    lines = list(auth)
    for item in awkward:
        for _ in range(5):
            lines.insert(rng.randrange(len(lines) + 1), item)
    return lines


@pytest.mark.parametrize("source_type", ["auto", "syslog"])
@pytest.mark.parametrize("read_bytes", [4096, 1 << 20])
def test_awkward_lines_match_rules_alone(
    detectors: tuple[Detector, Detector],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source_type: str,
    read_bytes: int,
) -> None:
    plain, prefiltered = detectors
    monkeypatch.setattr(batch, "READ_BYTES", read_bytes)
    log = tmp_path / "awkward.log"
    log.write_bytes(b"\n".join(_awkward_lines(random.Random(7))))  # the last line has no newline
    max_line_bytes = 300

    expected = _keys(_reference(plain, log, source_type, max_line_bytes))
    fast, totals = _fast(prefiltered, log, source_type, max_line_bytes)

    assert _keys(fast) == expected
    assert totals.parsed_lines > 0, "no block took the per-line path"
    if read_bytes < 65536:
        # Small blocks: some hold none of the awkward lines and take the raw-block path.
        assert totals.fast_lines > 0, "no block took the raw-block path"


def test_split_traditional_matches_re2_header() -> None:
    rng = random.Random(11)
    seeds = [line for name in ("auth.jsonl", "privesc.jsonl") for line in _corpus_lines(name)]
    alphabet = " \t\x0b\x0c\r[]:0123456789ADecJanab<>.-é\u00a0"
    names = ("mon", "day", "clock", "host", "tag", "pid", "msg")
    split_count = 0
    for seed in seeds:
        for _ in range(8):
            chars = list(seed)
            position = rng.randrange(min(len(chars), 48) + 1)
            chars[position : position + rng.randint(0, 2)] = rng.choice(alphabet) * rng.randint(
                0, 2
            )
            line = "".join(chars)
            split = syslog.split_traditional(line)
            if split is None:
                continue
            split_count += 1
            groups = syslog._HEADER.search(line)
            assert groups is not None, line
            expected = tuple(groups[syslog._HEADER.index[name]] for name in names)
            assert split == expected, line
            assert groups[syslog._HEADER.index["year"]] is None, line
            assert groups[syslog._HEADER.index["year2"]] is None, line
    assert split_count > len(seeds), "too few lines took the split path to compare"
