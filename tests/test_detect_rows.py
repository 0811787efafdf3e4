"""`detect_rows` and `RowRenderer` print what `detect_file`, attribution and `json.dumps` print."""

from __future__ import annotations

import io
import json
import random
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from irwatchd.cli.main import build_parser
from irwatchd.config import load_config
from irwatchd.detection import batch, parallel, rows
from irwatchd.detection.batch import detect_file
from irwatchd.detection.engine import Detector, hyperscan, source_address
from irwatchd.detection.fields import FieldConfirmer
from irwatchd.detection.process_context import ProcessContext, attribute_stream
from irwatchd.detection.row_transfer import print_ranges, render_rows, write_range_output
from irwatchd.detection.rows import RowRenderer, attribute_rows, detect_rows
from irwatchd.detection.rule import expand_rule_paths
from irwatchd.detection.rules import load_rules
from irwatchd.parsing import syslog
from tests.helpers import CONFIG, CORPUS

pytestmark = pytest.mark.skipif(hyperscan is None, reason="hyperscan is not installed")

MOMENT = datetime(2026, 12, 4, 12, tzinfo=UTC)

# User names an attacker can put in a line: every one must come out escaped as json.dumps does.
HOSTILE_USERS = [
    'quo"te',
    "back\\slash",
    "tab\there",
    "ctrl\x01\x1f\x7f",
    "nul\x00byte",
    "caf\u00e9",
    "line\u2028sep",
    "emoji\U0001f600",
    "</script>",
]


@pytest.fixture(scope="module")
def detector() -> Detector:
    loaded = load_config(CONFIG)
    return Detector(load_rules(expand_rule_paths(loaded.config.rules.files, loaded.base)))


def _expected(detector: Detector, path: Path, source_type: str, group: int) -> str:
    with path.open("rb") as handle:
        findings = detect_file(detector, handle, source_type, str(path), 300, now=MOMENT)
        attributed = attribute_stream(findings, ProcessContext(), group)
        return "".join(json.dumps(finding.to_detect_json()) + "\n" for finding in attributed)


def _rendered(detector: Detector, path: Path, source_type: str, group: int) -> str:
    renderer = RowRenderer()
    with path.open("rb") as handle:
        rows = detect_rows(detector, handle, source_type, str(path), 300, now=MOMENT)
        return "".join(
            renderer.render(chunk) for chunk in attribute_rows(rows, ProcessContext(), group)
        )


def _corpus_lines(name: str) -> list[bytes]:
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"evaluation corpus file {path} is absent")
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line)["line"].encode() for line in handle]


def _corpus_lines_in_one_second() -> list[str]:
    """Return the corpus auth lines with the stamp `Mar  8 15:14:19`, as lines of one log.

    The corpus comes from several months. Attribution drops an entry older than its max age
    behind the newest line, so lines of other months in between would drop the addresses that
    these tests hand across ranges.
    """
    return ["Mar  8 15:14:19" + line.decode()[15:] for line in _corpus_lines("auth.jsonl")]


def _hostile_lines() -> list[bytes]:
    lines = []
    for number, user in enumerate(HOSTILE_USERS):
        lines.append(
            f"Mar  8 15:14:{number:02} bastion sshd[81{number}]: Failed password for invalid "
            f"user {user} from 203.0.113.{number} port 22 ssh2".encode()
        )
    # Invalid UTF-8 and a CR send their blocks down the per-line path.
    lines.append(
        b"Mar  8 15:14:30 bastion sshd[830]: Failed password for r\xff\xfeot from 192.0.2.8 port 22"
    )
    lines.append(b'Mar  8 15:14:31 bastion sshd[831]: Invalid user a\\b"c from 192.0.2.9 port 22\r')
    return lines


@pytest.mark.parametrize(
    ("corpus", "source_type"),
    [
        ("auth.jsonl", "auto"),
        ("auth.jsonl", "syslog"),
        ("privesc.jsonl", "auto"),
        ("web.jsonl", "auto"),
        ("web.jsonl", "access_log"),
    ],
)
@pytest.mark.parametrize("group", [3, 1024])
def test_rows_print_as_findings(
    detector: Detector,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    corpus: str,
    source_type: str,
    group: int,
) -> None:
    # Small blocks: some hold a CR or invalid UTF-8 and take the per-line path.
    monkeypatch.setattr(batch, "READ_BYTES", 4096)
    lines = _corpus_lines(corpus)
    rng = random.Random(13)
    for item in _hostile_lines():
        for _ in range(3):
            lines.insert(rng.randrange(len(lines) + 1), item)
    log = tmp_path / "mixed.log"
    log.write_bytes(b"\n".join(lines) + b"\n")

    expected = _expected(detector, log, source_type, group)
    rendered = _rendered(detector, log, source_type, group)

    assert expected, "nothing was found; the comparison would prove nothing"
    assert rendered == expected


def test_rows_escape_hostile_users(detector: Detector, tmp_path: Path) -> None:
    log = tmp_path / "hostile.log"
    log.write_bytes(b"\n".join(_hostile_lines()) + b"\n")

    rendered = _rendered(detector, log, "syslog", 1024)
    rows = [json.loads(line) for line in rendered.splitlines()]

    assert rendered.isascii()
    users = [row["user"] for row in rows]
    for user in HOSTILE_USERS:
        assert user in users, f"{user!r} did not survive the JSON round trip"
    assert "r\ufffd\ufffdot" in users
    assert 'a\\b"c' in users


def test_rows_attribute_address_by_process(detector: Detector, tmp_path: Path) -> None:
    log = tmp_path / "process.log"
    log.write_text(
        "Mar  8 15:14:19 bastion sshd[811]: input_userauth_request: invalid user zed [preauth]\n"
        "Mar  8 15:14:20 bastion sshd[811]: Invalid user zed from 203.0.113.5 port 22\n"
        "Mar  8 15:14:21 bastion sshd[811]: input_userauth_request: invalid user zed [preauth]\n"
    )

    rendered = _rendered(detector, log, "syslog", 1024)
    rows = [json.loads(line) for line in rendered.splitlines()]

    assert rendered == _expected(detector, log, "syslog", 1024)
    assert [row["line"] for row in rows] == [1, 2, 3]
    assert [row["source_ip"] for row in rows] == ["203.0.113.5"] * 3


@pytest.mark.parametrize("jobs", ["2", "3"])
def test_jobs_output_matches_one_pass(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    jobs: str,
) -> None:
    monkeypatch.setattr(parallel, "MIN_BYTES_PER_JOB", 4096)
    monkeypatch.setattr(parallel, "MIN_BYTES_PER_RANGE", 2048)
    lines = _corpus_lines_in_one_second()[:3000]
    # Each process shows its address once, then lines without one follow in later ranges,
    # so the output is right only if attribution crosses range boundaries.
    for pid in range(40):
        lines.insert(
            pid * 10,
            f"Mar  8 15:14:19 bastion sshd[{9000 + pid}]: Invalid user u{pid} from "
            f"198.51.100.{pid} port 22",
        )
        lines.append(
            f"Mar  8 15:14:20 bastion sshd[{9000 + pid}]: input_userauth_request: invalid "
            f"user u{pid} [preauth]"
        )
    log = tmp_path / "auth.log"
    log.write_text("\n".join(lines) + "\n")
    arguments = ["detect", "-c", str(CONFIG), "--source-type", "syslog"]

    assert _run_detect([*arguments, "--jobs", "1", str(log)]) == 0
    single = _findings_printed(capsys.readouterr().out)
    assert _run_detect([*arguments, "--jobs", jobs, str(log)]) == 0
    forked = _findings_printed(capsys.readouterr().out)

    last = json.loads(single.splitlines()[-1])
    plan = parallel.split_ranges(str(log), int(jobs))
    assert plan.workers == int(jobs)
    assert len(plan.spans) > plan.workers, "no worker took a second range"
    assert last["line"] == len(lines)
    assert last["source_ip"] == "198.51.100.39", "the last line was not attributed by process"
    assert forked == single


def _run_detect(argv: list[str]) -> int:
    """Run `irwatchd detect` in this process, without `main` reconfiguring the logging."""
    args = build_parser("detect").parse_args(argv)
    args.config_path = Path(args.config)
    return int(args.handler(args))


def _findings_printed(output: str) -> str:
    """Return the JSON lines of `output`, without the log lines structlog prints by default."""
    return "".join(line for line in output.splitlines(keepends=True) if line.startswith("{"))


def _header_variants(rng: random.Random, seeds: list[str], count: int) -> list[str]:
    """Return `count` lines made from `seeds` with odd characters written into their headers."""
    alphabet = " \t\x0b\x0c\x00[]:0123456789ADecJanab<>.-é\u00a0\u0663\U0001f600"
    lines = []
    for _ in range(count):
        chars = list(rng.choice(seeds))
        position = rng.randrange(min(len(chars), 48) + 1)
        chars[position : position + rng.randint(0, 2)] = rng.choice(alphabet) * rng.randint(0, 2)
        lines.append("".join(chars))
    return lines


def test_header_split_matches_parsed_header(detector: Detector) -> None:
    seeds = [line.decode() for line in _corpus_lines("auth.jsonl")]
    seeds += [
        "Mar  8 15:14:19 sshd[5] sshd[811]: x",
        "Mar  8 15:14:19 a[b sshd[811]: x",
        "Mar  8 15:14:19 2024 sshd[811]: x",
        "Mar  8 15:14:19 bastion sshd[81 1]: x",
        "Mar  8 15:14:19 bastion sshd[\u0663]: x",
        "Mar  8 15:14:19 bastion sshd[811] x",
        "Mar  8 15:14:19 bastion sshd[811]",
        "Mar  8 15:14:19 bastion sshd:[811]: x",
        "Mar 08 15:14:19 bastion sshd[811]: x",
        "Feb 30 15:14:19 bastion sshd[811]: x",
        "Mar  8 15:14:19.5 bastion sshd[811]: x",
        "Mar  8 15:14:19 bastion ss\thd[811]: x",
    ]
    lines = seeds + _header_variants(random.Random(23), seeds, 20_000)
    builder = rows.RawRowBuilder(detector, MOMENT)
    fast_path_count = 0
    for line in lines:
        expected = builder._parsed_header(line)
        plain = not any(space in line for space in "\t\x0c\r")
        assert builder.header(line, plain) == expected, repr(line)
        assert builder.header(line, False) == expected, repr(line)
        fast_path_count += line[: syslog.STAMP_PREFIX] in builder._times
    assert fast_path_count > len(lines) // 2, "too few lines took the split in `_header`"


def test_field_confirmer_matches_confirm_groups(detector: Detector) -> None:
    lines = [line.decode() for line in _corpus_lines("auth.jsonl")]
    lines += [line.decode("utf-8", "replace") for line in _hostile_lines()]
    lines += [
        "Mar  8 15:14:19 bastion sshd[811]: Failed password for "
        + "\u00e9\x00" * 300_000
        + " from 192.0.2.1 port 22 ssh2",
        "Mar  8 15:14:19 bastion sshd[811]: Failed password for  from 192.0.2.1 port 22 ssh2",
        "Mar  8 15:14:19 bastion sshd[811]: Failed password for x from [::1]:22 port 22 ssh2",
        "Mar  8 15:14:19 bastion su: pam_unix(su:auth): authentication failure; logname= uid=1 "
        "euid=0 tty= ruser=m rhost=  user=root",
    ]
    confirmer = FieldConfirmer(detector, "syslog")
    rule_count = len(detector.ranked_rules("syslog"))
    masks = [(1 << rule_count) - 1, *(1 << index for index in range(rule_count))]
    found = 0
    for line in lines:
        for mask in masks:
            groups = detector.confirm_groups(line, "syslog", detector.rule_ids_of("syslog", mask))
            expected = [
                (rule, fields.get("user") or None, source_address("syslog", None, fields))
                for rule, fields in groups
            ]
            assert confirmer.confirm(line.encode(), line, mask) == expected, (mask, line[:200])
            found += len(expected)
    assert found > len(lines), "too few matches to compare"


def test_field_confirmer_rejects_access_log(detector: Detector) -> None:
    with pytest.raises(ValueError, match="access_log"):
        FieldConfirmer(detector, "access_log")


@pytest.mark.parametrize(("group", "output"), [(3, "memory"), (7, "file"), (1024, "append")])
def test_worker_ranges_print_as_one_pass(
    detector: Detector, tmp_path: Path, group: int, output: str
) -> None:
    # Processes that show their address first, then the corpus, whose rows lack an address
    # here and there, then lines of the first processes without an address.
    pids = range(7000, 7300)
    lines = [f"Mar  8 15:14:19 bastion sshd[{pid}]: Invalid user u{pid} from "
             f"198.51.{pid % 100}.{pid % 250} port 22" for pid in pids]  # fmt: skip
    lines += _corpus_lines_in_one_second()
    lines += [f"Mar  8 15:14:20 bastion sshd[{pid}]: input_userauth_request: invalid user "
              f"u{pid} [preauth]" for pid in pids]  # fmt: skip
    log = tmp_path / "auth.log"
    log.write_text("\n".join(lines) + "\n")
    with log.open("rb") as handle:
        all_rows = [row for chunk in detect_rows(detector, handle, "syslog", str(log), 300,
                                                 now=MOMENT) for row in chunk]  # fmt: skip
    renderer = RowRenderer()
    expected = "".join(
        renderer.render(chunk)
        for chunk in attribute_rows([list(all_rows)], ProcessContext(), group)
    )
    # Ranges of records of uneven sizes, through the worker files and back. Some ranges have
    # every address, and their processes lend addresses to rows of later ranges.
    rng = random.Random(group)
    sinks = []
    lacking = []
    start = 0
    while start < len(all_rows):
        records = []
        for _ in range(rng.randint(1, 4)):
            size = rng.randint(1, 60)
            records.append(render_rows(all_rows[start : start + size], renderer))
            start += size
        lacking.append(any(None in record.addresses for record in records))
        sink = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
        write_range_output(records, sink)
        sinks.append(sink)
    # Copied ranges go through sendfile to a file, and not to memory or a file opened to
    # append, which Linux's sendfile rejects.
    printed_path = tmp_path / "printed.jsonl"
    printed_path.write_bytes(b"earlier output\n" if output == "append" else b"")
    if output == "memory":
        memory = io.BytesIO()
        print_ranges(sinks, memory, group)
        printed = memory.getvalue().decode()
    else:
        with printed_path.open("ab" if output == "append" else "wb") as out:
            print_ranges(sinks, out, group)
        printed = printed_path.read_text().removeprefix("earlier output\n")
    for sink in sinks:
        sink.close()

    assert not lacking[0], "the first range lacks an address, so no range is copied"
    assert lacking[-1], "no range lacks an address, so none is attributed row by row"
    assert printed.endswith('"source_ip": "198.51.99.49", "user": "u7299", "time": '
                            '"2026-03-08T15:14:20Z"}\n')  # fmt: skip
    assert '"source_ip": null' in "".join(renderer.render(all_rows)), "no row lacked an address"
    assert printed == expected
