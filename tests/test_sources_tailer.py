"""The tailer in-process on real files: bounded reads, rewinds, checkpoints and identity."""

from __future__ import annotations

import errno
import json
import os
import threading
import tracemalloc
from pathlib import Path

import pytest
import structlog.testing

from irwatchd.sources.checkpoints import Checkpoint, CheckpointStore
from irwatchd.sources.followed import READ_CHUNK
from irwatchd.sources.tailer import LineBatch, Tailer, WatchSpec
from irwatchd.sources.watcher import DirectoryWatcher
from tests.helpers import wait_until


def make_tailer(log: Path, state: Path, start_at: str = "beginning") -> Tailer:
    store = CheckpointStore(state / "checkpoints.json")
    return Tailer([WatchSpec(str(log), "test", "syslog")], store, start_at=start_at)


def texts(batches: list[LineBatch]) -> list[str]:
    return [line.text for batch in batches for line in batch.lines]


def test_poll_reads_at_most_one_chunk(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    line = "x" * 99 + "\n"
    log.write_text(line * (3 * READ_CHUNK // len(line)))
    tailer = make_tailer(log, tmp_path)

    sizes = []
    while batches := tailer.poll():
        sizes.append(sum(item.size for batch in batches for item in batch.lines))
    tailer.close()

    assert len(sizes) == 3
    # A poll reads one chunk; a line cut by the previous chunk comes out whole with it.
    assert max(sizes) <= READ_CHUNK + len(line)
    assert sum(sizes) == log.stat().st_size


def peak_polling_memory(log: Path, lines: int, state: Path) -> int:
    """Write `lines` lines, read them all with the tailer, and return the peak traced bytes."""
    with log.open("w") as handle:
        for seq in range(lines):
            handle.write(f"Dec  4 10:00:00 host app[1]: burst line {seq}\n")
    tailer = make_tailer(log, state)
    tracemalloc.start()
    total = 0
    while batches := tailer.poll():
        total += sum(len(batch.lines) for batch in batches)
        tailer.checkpoints_now()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    tailer.close()
    assert total == lines
    return peak


@pytest.mark.slow
def test_burst_memory_does_not_grow_with_size(tmp_path: Path) -> None:
    small = peak_polling_memory(tmp_path / "small.log", 50_000, tmp_path / "small")
    large = peak_polling_memory(tmp_path / "large.log", 150_000, tmp_path / "large")

    # Three times the lines (6.7 MB), the same peak: two 1 MiB chunks of lines at most.
    assert large < small * 1.5, f"peak {large} bytes for 150,000 lines, {small} for 50,000"
    assert large < 16 << 20


def test_rewind_hands_out_lines_again(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("one\ntwo\n")
    tailer = make_tailer(log, tmp_path)
    assert texts(tailer.poll()) == ["one", "two"]
    tailer.checkpoints_now()
    with log.open("a") as handle:
        handle.write("three\nfour\n")
    assert texts(tailer.poll()) == ["three", "four"]

    tailer.rewind()

    assert texts(tailer.poll()) == ["three", "four"]
    assert tailer.poll() == []
    tailer.close()


def test_long_line_is_cut_and_counted(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_bytes(b"a" * 1000 + b"\nnext\n")
    store = CheckpointStore(tmp_path / "checkpoints.json")
    spec = WatchSpec(str(log), "test", "syslog")
    tailer = Tailer([spec], store, start_at="beginning", max_line_bytes=256)

    lines = [line for batch in tailer.poll() for line in batch.lines]
    tailer.close()

    assert [line.text for line in lines] == ["a" * 256, "next"]
    assert lines[0].truncated_bytes == 744
    assert lines[1].offset == 1001


def test_checkpoint_resumes_by_identity(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("one\n")
    tailer = make_tailer(log, tmp_path, start_at="end")
    assert texts(tailer.poll()) == []
    with log.open("a") as handle:
        handle.write("two\n")
    assert texts(tailer.poll()) == ["two"]
    tailer.checkpoints.save(tailer.checkpoints_now())
    tailer.close()

    with log.open("a") as handle:
        handle.write("three\n")
    os.rename(log, tmp_path / "auth.log.1")
    log.write_text("four\n")
    restarted = make_tailer(log, tmp_path, start_at="end")
    first = texts(restarted.poll())
    second = texts(restarted.poll())
    restarted.close()

    assert first + second == ["three", "four"]


def test_reused_inode_with_new_head_starts_at_zero(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("first file, line one\n")
    info = log.stat()
    store = CheckpointStore(tmp_path / "checkpoints.json")
    # A checkpoint of an older file with this inode but other first bytes.
    store.save([Checkpoint(str(log), info.st_dev, info.st_ino, "0" * 64, 20, 21, 1, str(log))])
    tailer = Tailer([WatchSpec(str(log), "test", "syslog")], store, start_at="end")

    assert texts(tailer.poll()) == ["first file, line one"]
    tailer.close()


def test_failed_checkpoint_save_is_written_again(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    store = CheckpointStore(folder / "checkpoints.json")
    checkpoint = Checkpoint("/var/log/auth.log", 1, 2, "0" * 64, 64, 100, None, "/var/log/auth.log")
    folder.rename(tmp_path / "moved")
    (tmp_path / "state").write_text("a file where the folder was")

    with pytest.raises(OSError):
        store.save([checkpoint], audit_position=(7, 8))

    (tmp_path / "state").unlink()
    (tmp_path / "state").mkdir()
    store.save([checkpoint], audit_position=(7, 8))
    saved = json.loads((tmp_path / "state" / "checkpoints.json").read_text())
    assert saved["checkpoints"][0]["offset"] == 100
    assert saved["audit_position"] == {"inode": 7, "size": 8}


def test_first_format_checkpoints_load(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.json"
    entry = {"path": "/var/log/auth.log", "device": 1, "inode": 2, "head_sha256": "0" * 64,
             "head_size": 64, "offset": 100, "line_number": None}  # fmt: skip
    path.write_text(json.dumps({"/var/log/auth.log": entry}))

    store = CheckpointStore(path)

    loaded = store.find((1, 2))
    assert loaded is not None
    assert loaded.offset == 100
    assert loaded.where == "/var/log/auth.log"


def test_watcher_restarts_dead_observer(tmp_path: Path) -> None:
    wake = threading.Event()
    watcher = DirectoryWatcher(wake)
    watcher.update([str(tmp_path)])
    watcher._observer.stop()
    watcher._observer.join(timeout=5)
    assert not watcher.is_alive()

    watcher.restart_if_dead([str(tmp_path)])
    wake.clear()
    (tmp_path / "new.log").write_text("line\n")

    try:
        assert watcher.is_alive()
        wait_until(wake.is_set, timeout=10)
    finally:
        watcher.stop()


def test_second_rotation_during_drain_loses_nothing(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("".join(f"a{seq:07d}\n" for seq in range(300_000)))  # 2.7 MB
    tailer = make_tailer(log, tmp_path)
    read = texts(tailer.poll())

    os.rename(log, tmp_path / "auth.log.1")
    log.write_text("b1\nb2\n")
    read += texts(tailer.poll())
    os.rename(log, tmp_path / "auth.log.2")
    log.write_text("c1\n")
    while batches := tailer.poll():
        read += texts(batches)
    tailer.close()

    expected = [f"a{seq:07d}" for seq in range(300_000)] + ["b1", "b2", "c1"]
    assert sorted(read) == sorted(expected)
    assert len(read) == len(expected)
    assert read.index("b1") > read.index("a0299999")


def test_watcher_falls_back_to_polling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wake = threading.Event()
    watcher = DirectoryWatcher(wake, poll_seconds=0.1)

    def no_watches_left(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    # The inotify observer fails as it does once fs.inotify.max_user_watches is used up.
    monkeypatch.setattr(watcher._observer, "schedule", no_watches_left)
    with structlog.testing.capture_logs() as logs:
        watcher.update([str(tmp_path)])
    wake.clear()
    (tmp_path / "new.log").write_text("line\n")

    try:
        assert watcher.mode == "polling"
        assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == [
            "watch_mode_degraded"
        ]
        wait_until(wake.is_set, timeout=10)
    finally:
        watcher.stop()


def test_set_specs_gives_followed_file_new_type(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("first\n")
    tailer = make_tailer(log, tmp_path)
    assert texts(tailer.poll()) == ["first"]

    tailer.set_specs([WatchSpec(str(log), "application", "access_log")])
    with log.open("a") as handle:
        handle.write("second\n")
    (batch,) = tailer.poll()

    assert (batch.file.group, batch.file.source_type) == ("application", "access_log")
    assert texts([batch]) == ["second"]


def test_set_specs_unwatches_file_glob_does_not_name(tmp_path: Path) -> None:
    web = tmp_path / "web"
    (web / "sub").mkdir(parents=True)
    nested = web / "sub" / "z-access.log"
    nested.write_text("first\n")
    glob_spec = WatchSpec(str(web / "*access*.log"), "application", "access_log")
    folder_spec = WatchSpec(str(web / "sub"), "application", "auto")
    tailer = Tailer([glob_spec, folder_spec], CheckpointStore(tmp_path / "checkpoints.json"),
                    start_at="beginning")  # fmt: skip
    assert texts(tailer.poll()) == ["first"]

    # fnmatch's `*` would match the slash of sub/z-access.log; discovery's glob does not.
    tailer.set_specs([glob_spec])
    with nested.open("a") as handle:
        handle.write("second\n")

    assert str(nested) not in tailer.files
    assert texts(tailer.poll()) == []


def test_set_specs_resumes_file_rotated_while_unwatched(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("one\n")
    store = CheckpointStore(tmp_path / "checkpoints.json")
    spec = WatchSpec(str(log), "security", "syslog")
    tailer = Tailer([spec], store, start_at="beginning")
    assert texts(tailer.poll()) == ["one"]
    store.save(tailer.checkpoints_now())

    tailer.set_specs([])
    with log.open("a") as handle:
        handle.write("two\nthree\n")
    log.rename(tmp_path / "auth.log.1")
    log.write_text("four\n")
    tailer.set_specs([spec])

    read = texts(tailer.poll())
    read += texts(tailer.poll())
    assert read == ["two", "three", "four"]
