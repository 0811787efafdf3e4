"""The fast paths find exactly what the rules alone find.

Three ways to run the same rules over the same file must agree finding for finding:
`Detector(rules, prefilter=False)` on every parsed line (the reference), the Hyperscan
prefilter over parsed batches (`detect_stream`), and the raw-block syslog path (`detect_file`).
The evaluation corpus supplies the lines. A second file mixes in the shapes that force the
fast paths to fall back: CR, invalid UTF-8, over-long lines, RFC 5424, JSON and empty lines.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import re2

from irwatchd.config import load_config
from irwatchd.detection import batch, hscache, parallel
from irwatchd.detection.batch import StreamTotals, detect_file, detect_stream, records_from
from irwatchd.detection.engine import Detector, hyperscan
from irwatchd.detection.finding import Finding
from irwatchd.detection.rule import expand_rule_paths
from irwatchd.detection.rules import load_rules
from irwatchd.parsing import syslog
from irwatchd.parsing.dispatch import guess_source_type, parse_line
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


def _awkward_lines(rng: random.Random, corpus: str) -> list[bytes]:
    """Corpus lines mixed with every shape that must leave the raw-block or plain-view path."""
    lines = [line.encode() for line in _corpus_lines(corpus)]
    failure = (
        b"Mar  8 15:14:19 bastion sshd[811]: Failed password for root from 203.0.113.9 port 22 ssh2"
    )
    request = b'192.0.2.5 - - [05/Mar/2024:09:20:03 +0000] "GET /?id=1 UNION SELECT 1 HTTP/1.1" 200 1 "-" "x"'
    awkward = [
        failure + b"\r",
        b"Mar  8 15:14:19 bastion sshd[811]: Failed password for r\xffot from 203.0.113.8 port 22 ssh2",
        b"<38>1 2024-03-08T15:14:19Z bastion sshd 811 - - Failed password for root from 203.0.113.7 port 22 ssh2",
        b"2024-03-08T15:14:19.123456+00:00 bastion sshd[811]: Failed password for root from 192.0.2.7 port 22 ssh2",
        b'{"MESSAGE": "Failed password for root from 192.0.2.6 port 22 ssh2", "SYSLOG_IDENTIFIER": "sshd", "_PID": "9"}',
        b"",
        failure[:60] + b"x" * 400 + failure[60:],
        failure + b" " + b"y" * 400,
        request + b"\r",
        request.replace(b"UNION", "UNI\u00d3N".encode()),
        request.replace(b"/?id=1", b"/?id=1" + b"z" * 400),
        b'2024/03/08 15:14:19 [error] 1#0: *1 open() failed, client: 192.0.2.9, server: x, request: "GET /?id=1 UNION SELECT 1 HTTP/1.1"',
    ]
    for item in awkward:
        for _ in range(5):
            lines.insert(rng.randrange(len(lines) + 1), item)
    return lines


@pytest.mark.parametrize(
    ("corpus", "source_type"),
    [
        ("auth.jsonl", "auto"),
        ("auth.jsonl", "syslog"),
        ("web.jsonl", "auto"),
        ("web.jsonl", "access_log"),
    ],
)
def test_awkward_lines_match_rules_alone(
    detectors: tuple[Detector, Detector],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    corpus: str,
    source_type: str,
) -> None:
    plain, prefiltered = detectors
    # Small blocks: some hold an awkward line and fall back, others take the fast path.
    monkeypatch.setattr(batch, "READ_BYTES", 4096)
    log = tmp_path / "awkward.log"
    lines = _awkward_lines(random.Random(7), corpus)[:4000]
    log.write_bytes(b"\n".join(lines))  # the last line has no newline
    max_line_bytes = 300

    expected = _keys(_reference(plain, log, source_type, max_line_bytes))
    fast, totals = _fast(prefiltered, log, source_type, max_line_bytes)

    assert expected, "the rules found nothing; the comparison would prove nothing"
    assert _keys(fast) == expected
    assert totals.lines == len(lines)
    assert totals.parsed_lines > 0, "no block took the per-line path"
    assert totals.fast_lines > 0, "no block took the raw-block or plain-view path"


def test_combined_access_view_matches_parse_line() -> None:
    rng = random.Random(5)
    moment = datetime(2026, 12, 4, tzinfo=UTC)
    alphabet = '%+&\\/*" \t-[]?=AZaz09\u00e9'
    compared = 0
    for seed in _corpus_lines("web.jsonl"):
        for variant in range(6):
            line = seed
            if variant:
                chars = list(seed)
                position = rng.randrange(len(chars) + 1)
                chars[position : position + rng.randint(0, 2)] = rng.choice(alphabet) * rng.randint(
                    0, 2
                )
                line = "".join(chars)
            if not line.isascii():
                continue
            view = batch.combined_access_view(line)
            if view is None:
                continue
            compared += 1
            assert view == parse_line(line, "access_log", moment).view, line
    assert compared > 1000, "too few combined-shape lines to compare"


def test_block_check_matches_access_guess() -> None:
    rng = random.Random(17)
    seeds = [line for name in CORPUS_FILES for line in _corpus_lines(name)]
    seeds += ["", "type=USER_AUTH msg=x", "node=a type=b", "[Fri Mar 08] [error] x", "1 2"]
    seeds += ["2024/03/08 15:14:19 [error] x", "2024-03-08T15:14:19Z host x", "2024-03-08 x"]
    alphabet = " /-T{<[0123456789JFMASONDtypenode="
    checked = 0
    for seed in seeds:
        for variant in range(6):
            chars = list(seed)
            if variant:
                position = rng.randrange(min(len(chars), 12) + 1)
                chars[position : position + rng.randint(0, 2)] = rng.choice(alphabet) * rng.randint(
                    0, 2
                )
            line = "".join(chars)
            if not line.isascii() or "\n" in line or "\r" in line:
                continue
            checked += 1
            flagged = batch._NOT_ACCESS_LOG.search(line.encode() + b"\n") is not None
            assert flagged == (guess_source_type(line) != "access_log"), repr(line)
    assert checked > 1000, "too few lines to compare"


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


@pytest.mark.parametrize("jobs", [2, 3])
def test_parallel_ranges_match_one_pass(
    detectors: tuple[Detector, Detector], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    _, prefiltered = detectors
    monkeypatch.setattr(parallel, "MIN_BYTES_PER_JOB", 1024)
    monkeypatch.setattr(parallel, "MIN_BYTES_PER_RANGE", 512)
    log = tmp_path / "awkward.log"
    log.write_bytes(b"\n".join(_awkward_lines(random.Random(9), "auth.jsonl")))
    moment = datetime(2026, 12, 4, tzinfo=UTC)

    def render(finding: Finding) -> str:
        return json.dumps(finding.to_detect_json()) + "\n"

    with log.open("rb") as handle:
        found = detect_file(prefiltered, handle, "auto", str(log), 300, now=moment)
        single = "".join(render(item) for item in found)
    plan = parallel.split_ranges(str(log), jobs)
    output = tmp_path / "parallel.jsonl"
    with output.open("wb") as sink:
        ok = parallel.write_findings_in_parallel(
            prefiltered, str(log), plan, "auto", 300, moment, render, sink
        )

    assert plan.workers == jobs
    assert len(plan.spans) > jobs
    assert ok
    assert single
    assert output.read_text() == single


def _counting_compiler(
    expressions: list[bytes], flags: list[int], compiles: list[int]
) -> Callable[[], object]:
    """Return a database compiler that appends to `compiles` on each call."""

    def compile_database() -> object:
        compiles.append(1)
        database = hyperscan.Database()
        database.compile(expressions=expressions, flags=flags)
        return database

    return compile_database


def test_hyperscan_cache_reuses_private_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cache"
    monkeypatch.setenv(hscache.CACHE_ENV, str(folder))
    expressions, flags = [b"Failed password"], [hyperscan.HS_FLAG_PREFILTER]
    compiles: list[int] = []
    compile_database = _counting_compiler(expressions, flags, compiles)

    hscache.load_or_compile(hyperscan, expressions, flags, compile_database)
    loaded = hscache.load_or_compile(hyperscan, expressions, flags, compile_database)
    hits: list[int] = []
    loaded.scan(
        b"sshd[1]: Failed password for root", match_event_handler=lambda *hit: hits.append(hit[2])
    )

    assert len(compiles) == 1, "the second call compiled instead of loading the cache"
    assert hits, "the loaded database found nothing"
    folder.chmod(0o777)
    hscache.load_or_compile(hyperscan, expressions, flags, compile_database)
    assert len(compiles) == 2, "a folder others can write was trusted"


def test_hyperscan_cache_loads_when_first_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(hscache.CACHE_ENV, str(tmp_path / "cache"))
    expressions, flags = [b"Invalid user"], [hyperscan.HS_FLAG_PREFILTER]
    compiles: list[int] = []
    compile_database = _counting_compiler(expressions, flags, compiles)

    hscache.load_later_or_compile(hyperscan, expressions, flags, compile_database)
    assert len(compiles) == 1, "an uncached database was not compiled at once"
    loader = hscache.load_later_or_compile(hyperscan, expressions, flags, compile_database)
    first = loader()
    hits: list[int] = []
    first.scan(b"sshd[1]: Invalid user x", match_event_handler=lambda *hit: hits.append(hit[2]))

    assert len(compiles) == 1, "a cached database was compiled again"
    assert loader() is first, "a second call loaded the database again"
    assert hits, "the loaded database found nothing"


def test_raw_view_check_matches_one_pass() -> None:
    # The check in one RE2 pass that `_is_raw_view_block` splits into cheaper steps.
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    one_pass = {
        "syslog": re2.compile(rb"\r|(?:\A|\n)(?:<|1 )", options),
        "auto": re2.compile(rb"\r|(?:\A|\n)[^JFMASOND]", options),
    }
    rng = random.Random(29)
    seeds = [line.encode() for name in CORPUS_FILES for line in _corpus_lines(name)]
    alphabet = [b"\r", b"\n", b"<", b"1 ", b"J", b"x", b"", b"\xc3\xa9"]
    counts = {True: 0, False: 0}
    for _ in range(3000):
        lines = [rng.choice(seeds) for _ in range(rng.randint(1, 4))]
        index = rng.randrange(len(lines))
        position = rng.choice([0, 0, 1, rng.randrange(len(lines[index]) + 1)])
        lines[index] = lines[index][:position] + rng.choice(alphabet) + lines[index][position:]
        block = b"\n".join(lines) + b"\n"
        for source_type in ("syslog", "auto"):
            expected = one_pass[source_type].search(block) is None
            raw = batch._is_raw_view_block(block, source_type, 1 << 20)
            assert raw == expected, (source_type, block)
            counts[raw] += 1
    assert counts[True] > 500, "too few blocks passed the check to compare"
    assert counts[False] > 500, "too few blocks failed the check to compare"


def test_simple_access_block_matches_line_checks() -> None:
    rng = random.Random(37)
    seeds = [line for line in _corpus_lines("web.jsonl") if line.isascii()]
    seeds += ['a b c [x] "GET / HTTP/1.1" 200 1 "-" "-"', 'a b c [x y] "" - - "" ""']
    alphabet = ['"', "\\", " ", "  ", "]", "[", "\t", "-", "7", "x", "\x7f", ""]
    counts = {True: 0, False: 0}
    for _ in range(4000):
        lines = [rng.choice(seeds) for _ in range(rng.randint(1, 3))]
        index = rng.randrange(len(lines))
        chars = list(lines[index])
        position = rng.randrange(len(chars) + 1)
        chars[position : position + rng.randint(0, 2)] = rng.choice(alphabet) * rng.randint(0, 2)
        lines[index] = "".join(chars)
        block = "".join(line + "\n" for line in lines)
        expected = all(batch.combined_access_view(line) is not None for line in lines)
        simple = batch._SIMPLE_ACCESS_LINES.fullmatch(block.encode()) is not None
        assert simple == expected, block
        counts[simple] += 1
    assert counts[True] > 500, "too few simple blocks to compare"
    assert counts[False] > 500, "too few other blocks to compare"


@pytest.mark.parametrize("tail", [b"\n", b""])
def test_block_path_resumes_after_huge_line(
    detectors: tuple[Detector, Detector], tmp_path: Path, tail: bytes
) -> None:
    # A 600 KB line has no newline in a whole 256 KiB read, so the per-line reader cuts it.
    # The lines after it go back to the block path, and read as one pass reads them.
    plain, prefiltered = detectors
    failure = "Dec  4 10:00:{:02d} web1 sshd[7{:02d}]: Failed password for root from 192.0.2.{} port 22 ssh2\n"
    before = "".join(failure.format(n, n, n + 1) for n in range(20)).encode()
    after = "".join(failure.format(n, n, n + 100) for n in range(40)).encode()
    huge = b"Dec  4 10:00:30 web1 app: " + b"A" * 600_000 + tail
    log = tmp_path / "auth.log"
    log.write_bytes(before + huge + after * 1000)

    expected = _keys(_reference(plain, log, "auto", 65536))
    fast, totals = _fast(prefiltered, log, "auto", 65536)

    assert len(expected) == 20 + 40 * 1000 - (0 if tail else 1)
    assert _keys(fast) == expected
    assert totals.truncated_lines == 1
    assert totals.first_truncated_line == 21
    # Only the huge line was parsed on its own. Without its newline, it takes in the next line.
    assert totals.parsed_lines == 1
