"""The C++ row builder prints the same bytes as the Python rows of `irwatchd detect`."""

from __future__ import annotations

import gc
import os
import random
import weakref
from datetime import UTC, datetime
from pathlib import Path

import pytest

from irwatchd.cli import check
from irwatchd.cli.check import native_rows_note
from irwatchd.config import load_config
from irwatchd.detection import batch, native_rows
from irwatchd.detection.engine import Detector
from irwatchd.detection.native_rows import NativeRows, detect_rendered
from irwatchd.detection.process_context import ProcessContext
from irwatchd.detection.row_transfer import RenderedRows, attribute_rendered
from irwatchd.detection.rule import expand_rule_paths
from irwatchd.detection.rules import load_rules
from tests.helpers import CONFIG
from tests.test_detect_rows import _corpus_lines, _header_variants, _hostile_lines

MOMENT = datetime(2026, 12, 4, 12, tzinfo=UTC)
HEADERS = ("/usr/include/hs/hs.h", "/usr/include/re2/re2.h")

needs_native = pytest.mark.skipif(
    not native_rows.native_available(),
    reason="the _rawrows extension is not built (needs g++, libhyperscan-dev and libre2-dev)",
)


@pytest.fixture(scope="module")
def detector() -> Detector:
    loaded = load_config(CONFIG)
    return Detector(load_rules(expand_rule_paths(loaded.config.rules.files, loaded.base)))


def test_extension_built_where_its_libraries_are() -> None:
    if not all(os.path.exists(header) for header in HEADERS):
        pytest.skip(f"{' and '.join(HEADERS)} are absent, so setup.py skips the extension")
    assert native_rows.native_available(), "pip install -e . did not build _rawrows"


def _printed(detector: Detector, path: Path, source_type: str, *, native: bool) -> str:
    with path.open("rb") as handle:
        records = detect_rendered(
            detector, handle, source_type, str(path), 300, now=MOMENT, native=native
        )
        return "".join(attribute_rendered(records, ProcessContext()))


def _compare(detector: Detector, tmp_path: Path, lines: list[bytes], source_type: str) -> str:
    log = tmp_path / "mixed.log"
    log.write_bytes(b"\n".join(lines) + b"\n")
    expected = _printed(detector, log, source_type, native=False)
    assert expected, "nothing was found; the comparison would prove nothing"
    assert _printed(detector, log, source_type, native=True) == expected
    return expected


@needs_native
@pytest.mark.parametrize("source_type", ["auto", "syslog"])
def test_native_rows_match_on_corpus_and_hostile_lines(
    detector: Detector,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source_type: str,
) -> None:
    monkeypatch.setattr(batch, "READ_BYTES", 4096)
    lines = _corpus_lines("auth.jsonl") + _corpus_lines("privesc.jsonl")
    rng = random.Random(17)
    for item in _hostile_lines():
        for _ in range(3):
            lines.insert(rng.randrange(len(lines) + 1), item)
    _compare(detector, tmp_path, lines, source_type)


@needs_native
def test_native_rows_match_on_odd_headers(
    detector: Detector,
    tmp_path: Path,
) -> None:
    seeds = [line.decode() for line in _corpus_lines("auth.jsonl")]
    seeds += [
        "Mar  8 15:14:19 a[b sshd[811]: Invalid user x from 192.0.2.1 port 22",
        "Mar  8 15:14:19 2024 sshd[811]: Invalid user x from 192.0.2.1 port 22",
        "Mar  8 15:14:19 bastion sshd[\u0663]: Invalid user x from 192.0.2.1 port 22",
        "Mar  8 15:14:19 bastion sshd[81 1]: Invalid user x from 192.0.2.1 port 22",
        "Mar  8 15:14:19 b\u00e9 sshd[811]: Invalid user x from 192.0.2.1 port 22",
        "Mar  8 15:14:60 bastion sshd[811]: Invalid user x from 192.0.2.1 port 22",
        "Mar  8 15:14:99 bastion sshd[811]: Invalid user x from 192.0.2.1 port 22",
        "Feb 29 15:14:19 bastion sshd[811]: Invalid user x from 192.0.2.1 port 22",
        "Feb 30 15:14:19 bastion sshd[811]: Invalid user x from 192.0.2.1 port 22",
        "Mar  8 15:14:1x bastion sshd[811]: Invalid user x from 192.0.2.1 port 22",
        "Mar  8 15:14:19 bastion sshd[]: Invalid user x from 192.0.2.1 port 22",
        "Mar  8 15:14:19 bastion sshd[abc]: Invalid user x from 192.0.2.1 port 22",
        "Mar  8 15:14:19 bastion sshd[811] Invalid user x from 192.0.2.1 port 22",
        # Around the year guess of `parse_bsd`: a day after MOMENT moves back a year.
        "Dec  5 11:59:59 bastion sshd[811]: Invalid user x from 192.0.2.1 port 22",
        "Dec  5 12:00:00 bastion sshd[812]: Invalid user x from 192.0.2.1 port 22",
        "Dec  5 12:00:30 bastion sshd[813]: Invalid user x from 192.0.2.1 port 22",
        "Dec 31 23:59:59 bastion sshd[814]: Invalid user x from 192.0.2.1 port 22",
        "Jan  1 00:00:00 bastion sshd[815]: Invalid user x from 192.0.2.1 port 22",
    ]
    lines = seeds + _header_variants(random.Random(29), seeds, 5_000)
    _compare(detector, tmp_path, [line.encode() for line in lines], "syslog")


@needs_native
def test_native_process_keys_match_across_hosts(detector: Detector, tmp_path: Path) -> None:
    # The same PID on other hosts and programs, and other PIDs on one host, one line after
    # another: each row's (host, program, PID) must be its own line's, as in Python.
    rng = random.Random(41)
    lines = []
    for _ in range(3_000):
        host = rng.choice(["alpha", "beta", "alpha-2"])
        program = rng.choice(["sshd", "sshd-session"])
        pid = rng.choice(["811", "812", "8110", "81"])
        if rng.random() < 0.5:
            message = f"Invalid user u{pid} from 192.0.2.{rng.randrange(1, 250)} port 22"
        else:
            message = f"input_userauth_request: invalid user u{pid} [preauth]"
        lines.append(f"Mar  8 15:14:19 {host} {program}[{pid}]: {message}".encode())
    log = tmp_path / "hosts.log"
    log.write_bytes(b"\n".join(lines) + b"\n")
    keys = {}
    for native in (False, True):
        with log.open("rb") as handle:
            records = detect_rendered(
                detector, handle, "syslog", str(log), 300, now=MOMENT, native=native
            )
            keys[native] = [key for record in records for key in record.processes]
    assert len(keys[False]) == 3_000
    assert keys[True] == keys[False]
    assert _compare(detector, tmp_path, lines, "syslog")


@needs_native
def test_native_rows_match_on_random_byte_edits(detector: Detector, tmp_path: Path) -> None:
    # Any byte anywhere, invalid UTF-8, NUL, CR and newlines included: blocks that stop being
    # raw syslog take the Python path, and the rest must come out the same from both.
    seeds = _corpus_lines("auth.jsonl") + _corpus_lines("privesc.jsonl")
    rng = random.Random(53)
    lines = []
    for _ in range(5_000):
        line = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(line) + 1)
            if rng.random() < 0.5:
                line[position:position] = bytes([rng.randrange(256)])
            else:
                del line[position : position + rng.randint(1, 3)]
        lines.append(bytes(line))
    _compare(detector, tmp_path, lines, "syslog")


@needs_native
def test_native_times_match_python_times(detector: Detector, tmp_path: Path) -> None:
    # A traditional stamp has no zone and is read as UTC. The C++ side composes each time from
    # its minute, so every second of some minutes, and second 60, which has no time.
    lines: list[str] = []
    for day in ("Feb 28", "Feb 29", "Mar  1", "Dec  4", "Dec  5", "Dec 31", "Jan  1"):
        for clock in ("00:00", "11:59", "12:00", "23:59"):
            for second in (*range(0, 61, 3), 59, 60):
                stamp = f"{day} {clock}:{second:02}"
                lines.append(
                    f"{stamp} bastion sshd[{len(lines)}]: Invalid user x from 192.0.2.{second} "
                    "port 22"
                )
    _compare(detector, tmp_path, [line.encode() for line in lines], "syslog")


@needs_native
def test_native_engine_raises_a_callback_error(
    detector: Detector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: NativeRows, prefix: str) -> object:
        raise LookupError(f"no minute for {prefix!r}")

    monkeypatch.setattr(NativeRows, "_minute_of", broken)
    rows = NativeRows(detector, MOMENT)
    block = b"Mar  8 15:14:19 bastion sshd[811]: Invalid user x from 192.0.2.1 port 22\n"
    rendered = RenderedRows([], [], [], [])

    with pytest.raises(LookupError, match="no minute for 'Mar  8 15:14:'"):
        rows.add_block(batch.RawCandidates(detector, block, "syslog", 0, 0), rendered)
    assert rendered.lines == []


@needs_native
def test_native_rows_freed_after_last_reference(detector: Detector) -> None:
    # The Engine holds bound methods of its NativeRows, so the two form a reference cycle
    # that only a garbage-collected Engine type lets the collector free.
    rows = NativeRows(detector, MOMENT)
    reference = weakref.ref(rows)
    del rows
    gc.collect()

    assert reference() is None, "NativeRows and its Engine outlive their last reference"


def test_check_names_the_row_builder_in_use(detector: Detector) -> None:
    note = native_rows_note(detector)

    if native_rows.native_available():
        assert note == "detect: syslog rows are built by the C++ row builder"
    else:
        assert "libhyperscan-dev libre2-dev" in note


@needs_native
def test_check_names_the_row_builder_without_extension(
    detector: Detector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(check, "native_available", lambda: False)

    assert "install g++ python3-dev libhyperscan-dev libre2-dev" in native_rows_note(detector)


@needs_native
def test_damaged_cache_file_is_compiled_again(
    detector: Detector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    monkeypatch.setenv("IRWATCHD_CACHE_DIR", str(cache))
    NativeRows(detector, MOMENT)
    [cached] = cache.glob("native-*.db")
    cached.write_bytes(b"not a Hyperscan database")

    rows = NativeRows(detector, MOMENT)
    block = b"Mar  8 15:14:19 bastion sshd[811]: Invalid user x from 192.0.2.1 port 22\n"
    rendered = RenderedRows([], [], [], [])
    rows.add_block(batch.RawCandidates(detector, block, "syslog", 0, 0), rendered)

    assert rendered.addresses == ["192.0.2.1"]
    assert cached.read_bytes() != b"not a Hyperscan database", "the damaged file was kept"
