"""The daemon as a subprocess follows real files through rotation, truncation and restarts.

Every line carries a sequence number. Each test checks that the audit log contains exactly
one finding per line written, so a lost line and a line read twice both fail.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.helpers import (
    DaemonProcess,
    append_lines,
    finding_originals,
    log_events,
    sequence_counts,
    sshd_failure_lines,
    start_daemon,
    wait_until,
    write_daemon_config,
)


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    folder = tmp_path / "logs"
    folder.mkdir()
    return folder


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_daemon_config(tmp_path)


def wait_for_findings(state: Path, expected: Iterable[int], timeout: float = 30) -> None:
    """Wait until every expected sequence number has a finding."""
    wanted = set(expected)
    wait_until(lambda: wanted <= set(sequence_counts(finding_originals(state))), timeout)


def assert_each_once(state: Path, expected: Iterable[int]) -> None:
    counts = sequence_counts(finding_originals(state))
    wanted = set(expected)
    missing = sorted(wanted - set(counts))
    repeated = sorted(seq for seq, count in counts.items() if count > 1)
    unexpected = sorted(set(counts) - wanted)
    assert missing == [], f"lines without a finding: {missing}"
    assert repeated == [], f"lines with more than one finding: {repeated}"
    assert unexpected == [], f"findings for lines never written: {unexpected}"
    assert sum(counts.values()) == len(wanted)


def stop(daemon: DaemonProcess) -> None:
    assert daemon.stop() == 0, daemon.log_text()


def test_rename_rotation_counts_late_writes(logs: Path, state: Path, config: Path) -> None:
    auth = logs / "auth.log"
    auth.touch()
    daemon = start_daemon(state, [f"{auth}:syslog"], config=config)
    writer = auth.open("a", encoding="utf-8")
    writer.writelines(line + "\n" for line in sshd_failure_lines(range(50)))
    writer.flush()
    wait_for_findings(state, range(50))

    os.rename(auth, logs / "auth.log.1")
    append_lines(auth, sshd_failure_lines(range(100, 150)))
    # The writer keeps the renamed file open, as a logger does until it reopens its log.
    writer.writelines(line + "\n" for line in sshd_failure_lines(range(50, 60)))
    writer.close()
    wait_for_findings(state, [*range(60), *range(100, 150)])
    stop(daemon)

    assert_each_once(state, [*range(60), *range(100, 150)])
    assert log_events(daemon, "file_rotated")


@pytest.mark.parametrize("new_lines", [10, 120], ids=["shorter", "longer"])
def test_copytruncate_reads_copy_tail(
    logs: Path, state: Path, config: Path, new_lines: int
) -> None:
    auth = logs / "auth.log"
    auth.touch()
    daemon = start_daemon(state, [f"{auth}:syslog"], config=config)
    append_lines(auth, sshd_failure_lines(range(50)))
    wait_for_findings(state, range(50))

    # The daemon is stopped during the copy and the truncation, so lines 50-59 are only in
    # the copy when it looks.
    daemon.signal(signal.SIGSTOP)
    try:
        append_lines(auth, sshd_failure_lines(range(50, 60)))
        shutil.copyfile(auth, logs / "auth.log.1")
        with auth.open("r+b") as handle:
            handle.truncate(0)
        append_lines(auth, sshd_failure_lines(range(1000, 1000 + new_lines)))
    finally:
        daemon.signal(signal.SIGCONT)
    wait_for_findings(state, [*range(60), *range(1000, 1000 + new_lines)])
    stop(daemon)

    assert_each_once(state, [*range(60), *range(1000, 1000 + new_lines)])
    assert log_events(daemon, "file_copy_found")


def test_truncation_restarts_at_zero(logs: Path, state: Path, config: Path) -> None:
    auth = logs / "auth.log"
    auth.touch()
    daemon = start_daemon(state, [f"{auth}:syslog"], config=config)
    append_lines(auth, sshd_failure_lines(range(50)))
    wait_for_findings(state, range(50))

    with auth.open("r+b") as handle:
        handle.truncate(0)
    wait_until(lambda: log_events(daemon, "file_truncated"))
    append_lines(auth, sshd_failure_lines(range(100, 110)))
    wait_for_findings(state, [*range(50), *range(100, 110)])
    stop(daemon)

    assert_each_once(state, [*range(50), *range(100, 110)])


def test_delete_and_recreate(logs: Path, state: Path, config: Path) -> None:
    auth = logs / "auth.log"
    auth.touch()
    daemon = start_daemon(state, [f"{auth}:syslog"], config=config)
    writer = auth.open("a", encoding="utf-8")
    writer.writelines(line + "\n" for line in sshd_failure_lines(range(50)))
    writer.flush()
    wait_for_findings(state, range(50))

    auth.unlink()
    writer.writelines(line + "\n" for line in sshd_failure_lines(range(50, 55)))
    writer.close()
    append_lines(auth, sshd_failure_lines(range(100, 110)))
    wait_for_findings(state, [*range(55), *range(100, 110)])
    stop(daemon)

    assert_each_once(state, [*range(55), *range(100, 110)])
    assert log_events(daemon, "file_rotated")


def test_glob_picks_up_new_file(logs: Path, state: Path, config: Path) -> None:
    first = logs / "a.log"
    first.touch()
    daemon = start_daemon(state, [f"{logs}/*.log:syslog"], config=config)
    append_lines(first, sshd_failure_lines(range(10)))
    wait_for_findings(state, range(10))

    second = logs / "b.log"
    append_lines(second, sshd_failure_lines(range(100, 110)))
    wait_for_findings(state, [*range(10), *range(100, 110)])
    stop(daemon)

    assert_each_once(state, [*range(10), *range(100, 110)])


def test_directory_leaves_compressed_files_alone(logs: Path, state: Path, config: Path) -> None:
    auth = logs / "auth.log"
    auth.touch()
    daemon = start_daemon(state, [f"{logs}:syslog"], config=config)
    append_lines(auth, sshd_failure_lines(range(10)))
    wait_for_findings(state, range(10))

    rotated = "".join(line + "\n" for line in sshd_failure_lines(range(500, 510)))
    (logs / "auth.log.2.gz").write_bytes(gzip.compress(rotated.encode()))
    append_lines(auth, sshd_failure_lines(range(10, 20)))
    wait_for_findings(state, range(20))
    stop(daemon)

    assert_each_once(state, range(20))
    assert not log_events(daemon, "source_binary_skipped")


def test_partial_line_waits_for_newline(logs: Path, state: Path, config: Path) -> None:
    auth = logs / "auth.log"
    auth.touch()
    daemon = start_daemon(state, [f"{auth}:syslog"], config=config)
    first, second = sshd_failure_lines([1, 2])
    cut = len(first) - 10
    with auth.open("a", encoding="utf-8") as handle:
        handle.write(first[:cut])

    def partial_bytes() -> int:
        status = json.loads((state / "status.json").read_text())
        return int(status["queues"]["partial_line_bytes"])

    wait_until(lambda: (state / "status.json").exists() and partial_bytes() == cut)
    assert finding_originals(state) == []

    with auth.open("a", encoding="utf-8") as handle:
        handle.write(first[cut:] + "\n" + second + "\n")
    wait_for_findings(state, [1, 2])
    stop(daemon)

    assert finding_originals(state) == [first, second]


def test_restart_reads_lines_written_while_down(logs: Path, state: Path, tmp_path: Path) -> None:
    config = write_daemon_config(tmp_path, start_at="end")
    auth = logs / "auth.log"
    daemon = start_daemon(state, [f"{auth}:syslog"], config=config)
    append_lines(auth, sshd_failure_lines(range(50)))
    wait_for_findings(state, range(50))
    stop(daemon)

    append_lines(auth, sshd_failure_lines(range(50, 100)))
    daemon = start_daemon(state, [f"{auth}:syslog"], config=config)
    wait_for_findings(state, range(100))
    stop(daemon)

    assert_each_once(state, range(100))


def test_start_at_end_skips_old_lines(logs: Path, state: Path, tmp_path: Path) -> None:
    config = write_daemon_config(tmp_path, start_at="end")
    auth = logs / "auth.log"
    append_lines(auth, sshd_failure_lines(range(10)))
    daemon = start_daemon(state, [f"{auth}:syslog"], config=config)
    append_lines(auth, sshd_failure_lines(range(10, 20)))
    wait_for_findings(state, range(10, 20))
    stop(daemon)

    assert_each_once(state, range(10, 20))


def test_stop_without_new_lines_keeps_place(logs: Path, state: Path, tmp_path: Path) -> None:
    config = write_daemon_config(tmp_path, start_at="end")
    auth = logs / "auth.log"
    append_lines(auth, sshd_failure_lines(range(10)))
    # Opened at its end, with no line read before the stop.
    stop(start_daemon(state, [f"{auth}:syslog"], config=config))
    append_lines(auth, sshd_failure_lines(range(10, 15)))
    daemon = start_daemon(state, [f"{auth}:syslog"], config=config)
    wait_for_findings(state, range(10, 15))
    stop(daemon)

    assert_each_once(state, range(10, 15))


@pytest.mark.parametrize("rotation", ["rename", "copytruncate"])
def test_rotation_while_down_resumes_old_file(
    logs: Path, state: Path, config: Path, rotation: str
) -> None:
    auth = logs / "auth.log"
    auth.touch()
    daemon = start_daemon(state, [f"{auth}:syslog"], config=config)
    append_lines(auth, sshd_failure_lines(range(50)))
    wait_for_findings(state, range(50))
    stop(daemon)

    append_lines(auth, sshd_failure_lines(range(50, 60)))
    if rotation == "rename":
        os.rename(auth, logs / "auth.log.1")
    else:
        shutil.copyfile(auth, logs / "auth.log.1")
        with auth.open("r+b") as handle:
            handle.truncate(0)
    append_lines(auth, sshd_failure_lines(range(100, 110)))
    daemon = start_daemon(state, [f"{auth}:syslog"], config=config)
    wait_for_findings(state, [*range(60), *range(100, 110)])
    stop(daemon)

    assert_each_once(state, [*range(60), *range(100, 110)])


def test_symlinked_log_follows_target(logs: Path, state: Path, config: Path) -> None:
    targets = logs.parent / "targets"
    targets.mkdir()
    first, second = targets / "app-1.log", targets / "app-2.log"
    first.touch()
    link = logs / "current.log"
    link.symlink_to(first)
    daemon = start_daemon(state, [f"{link}:syslog"], config=config)
    append_lines(first, sshd_failure_lines(range(10)))
    wait_for_findings(state, range(10))

    # Rotate the target behind the link, then point the link at another file.
    os.rename(first, targets / "app-1.log.1")
    append_lines(first, sshd_failure_lines(range(100, 110)))
    wait_for_findings(state, [*range(10), *range(100, 110)])
    append_lines(second, sshd_failure_lines(range(200, 210)))
    replacement = logs / "current.log.new"
    replacement.symlink_to(second)
    os.replace(replacement, link)
    wait_for_findings(state, [*range(10), *range(100, 110), *range(200, 210)])
    stop(daemon)

    assert_each_once(state, [*range(10), *range(100, 110), *range(200, 210)])


def test_directory_rotation_never_rereads_old_file(logs: Path, state: Path, config: Path) -> None:
    auth = logs / "auth.log"
    auth.touch()
    daemon = start_daemon(state, [f"{logs}:syslog"], config=config)
    writer = auth.open("a", encoding="utf-8")
    writer.writelines(line + "\n" for line in sshd_failure_lines(range(20)))
    writer.flush()
    wait_for_findings(state, range(20))

    # The renamed file stays in the watched folder: once the daemon stops draining it as
    # a rotated file, it must follow it under its new name from its checkpoint, not from 0.
    os.rename(auth, logs / "auth.log.1")
    append_lines(auth, sshd_failure_lines(range(100, 110)))
    wait_until(lambda: log_events(daemon, "file_finished"), timeout=30)
    writer.writelines(line + "\n" for line in sshd_failure_lines(range(20, 25)))
    writer.close()
    wait_for_findings(state, [*range(25), *range(100, 110)])
    stop(daemon)

    assert_each_once(state, [*range(25), *range(100, 110)])
