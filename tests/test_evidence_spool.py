"""Evidence lines whose text waits in a temporary file: they must read as the in-memory ones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from irwatchd.correlation import evidence_spool
from irwatchd.correlation.evidence import EvidenceLines
from irwatchd.correlation.evidence_spool import EvidenceSpool, SpooledEvidence

LINES = [
    ("/var/log/auth.log", 0, "Failed password for root from 192.0.2.1"),
    ("/var/log/auth.log", 41, "Failed password for jürgen from 192.0.2.1 \u2028"),
    ("/var/log/auth.log.1", 7, ""),
    ("/var/log/auth.log", 99, "replaced \ufffd byte, NUL \x00, lone \udcff"),
]


def _both(spool: EvidenceSpool) -> tuple[EvidenceLines, SpooledEvidence]:
    plain, spooled = EvidenceLines(), SpooledEvidence(spool)
    for path, offset, line in LINES:
        plain.append_line(path, offset, line)
        spooled.append_line(path, offset, line)
    return plain, spooled


def test_spooled_lines_read_as_in_memory(tmp_path: Path) -> None:
    spool = EvidenceSpool(tmp_path)
    plain, spooled = _both(spool)
    assert list(spooled) == list(plain)
    assert spooled == plain
    assert spooled[-1] == plain[-1]
    assert spooled[1:3] == plain[1:3]
    assert spooled.text_size() == 0
    assert spooled.to_json() == plain.to_json()
    for count in (0, 1, 3, 10):
        assert list(spooled.tail(count)) == list(plain.tail(count))
    spool.close()


def test_spool_reads_written_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evidence_spool, "WRITE_BYTES", 64)
    spool = EvidenceSpool(tmp_path)
    plain, spooled = _both(spool)
    for number in range(50):
        plain.append_line("/x", number, f"line {number} " * 5)
        spooled.append_line("/x", number, f"line {number} " * 5)
    assert spool.size() > 64 * 10
    assert list(spooled) == list(plain)
    # Nothing stays behind in the folder: the file has no name.
    assert os.listdir(tmp_path) == []
    spool.close()


def test_spooled_keeps_other_shapes(tmp_path: Path) -> None:
    spooled = SpooledEvidence(EvidenceSpool(tmp_path), [{"path": "/a", "offset": 1, "line": "x"}])
    spooled.append({"note": "added by hand"})
    assert list(spooled) == [{"path": "/a", "offset": 1, "line": "x"}, {"note": "added by hand"}]
    assert spooled.text_size() == 1
    assert list(spooled.tail(1)) == [{"note": "added by hand"}]


def test_spool_cut_file_raises(tmp_path: Path) -> None:
    spool = EvidenceSpool(tmp_path)
    start, end = spool.add("x" * 100)
    spool.read(0, 1)  # nothing written yet: read from memory
    spool._write_pending()
    os.ftruncate(spool._file.fileno(), 10)
    with pytest.raises(OSError, match="returned 10 of 100 bytes at 0"):
        spool.read(start, end)
