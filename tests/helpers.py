"""Shared test helpers: waiting without fixed sleeps, and running the daemon as a subprocess."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
CONFIG = ROOT / "etc" / "irwatchd.yaml"


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns a truthy value and return it; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


def read_audit(state_dir: Path) -> list[dict[str, Any]]:
    """Return every complete record of the audit log in a state directory."""
    path = state_dir / "audit.jsonl"
    if not path.exists():
        return []
    records = []
    # The part after the last newline is a record the daemon is still writing.
    complete = path.read_bytes().split(b"\n")[:-1]
    for raw in complete:
        if raw.strip():
            records.append(json.loads(raw))
    return records


def audit_actions(state_dir: Path, action: str) -> list[dict[str, Any]]:
    """Return the audit records whose `event.action` is `action`."""
    return [r for r in read_audit(state_dir) if r.get("event", {}).get("action") == action]


def irwatchd_command(*args: str) -> list[str]:
    """Return the argument list that runs `irwatchd ARGS` with this interpreter."""
    return [sys.executable, "-m", "irwatchd", *args]


def run_cli(
    *args: str, input_text: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run one irwatchd command to completion and return its result."""
    return subprocess.run(
        irwatchd_command(*args), cwd=ROOT, input=input_text, capture_output=True,
        text=True, timeout=timeout, check=False,
    )  # fmt: skip


class DaemonProcess:
    """A running `irwatchd run` subprocess with its state directory."""

    def __init__(
        self, process: subprocess.Popen[bytes], state_dir: Path, stderr_path: Path
    ) -> None:
        self.process = process
        self.state_dir = state_dir
        self.stderr_path = stderr_path

    def log_text(self) -> str:
        """Return what the daemon wrote to stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until the daemon has logged that it started."""
        wait_until(
            lambda: "daemon_started" in self.log_text() or self.process.poll() is not None, timeout
        )
        assert self.process.poll() is None, f"daemon exited early:\n{self.log_text()}"

    def signal(self, number: int) -> None:
        """Send a signal to the daemon."""
        self.process.send_signal(number)

    def stop(self, timeout: float = 20.0) -> int:
        """Send SIGTERM and wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


@contextmanager
def running_daemon(
    state_dir: Path,
    watches: list[str],
    *extra: str,
    config: Path = CONFIG,
    env: dict[str, str] | None = None,
) -> Iterator[DaemonProcess]:
    """Start `irwatchd run` on the given watches, wait until it is ready, and stop it afterwards."""
    state_dir.mkdir(parents=True, exist_ok=True)
    stderr_path = state_dir.parent / f"{state_dir.name}.stderr.log"
    arguments = ["run", "-c", str(config), "--state-dir", str(state_dir)]
    for watch in watches:
        arguments += ["--watch", watch]
    arguments += list(extra)
    with stderr_path.open("ab") as stderr:
        process = subprocess.Popen(
            irwatchd_command(*arguments), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
    daemon = DaemonProcess(process, state_dir, stderr_path)
    try:
        daemon.wait_ready()
        yield daemon
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def corpus_lines(name: str, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Return the corpus objects of one file that match `predicate`."""
    path = CORPUS / name
    return [item for item in map(json.loads, path.open()) if predicate(item)]


def append_lines(path: Path, lines: list[str]) -> None:
    """Append lines to a log file the way a logger does: one write per line, flushed."""
    with path.open("a", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")
            handle.flush()


# Reliability tests: numbered sshd lines, and counting the findings the daemon recorded.

SSHD_FAILURE_RULE = "sshd-failed-auth"
SSHD_RULES = ROOT / "etc" / "rules.d" / "10-sshd.yaml"
_SEQUENCE = re.compile(r"Failed password for user(\d+) from ")


def sshd_failure_line(seq: int, addresses: int = 250) -> str:
    """Return an sshd failed-password line carrying `seq` as its user name and port.

    The number sits within the first 64 bytes, so files that start with different
    numbers have different heads, as real logs with timestamps do.
    """
    stamp = datetime.now(UTC).strftime("%b %e %H:%M:%S")
    address = f"203.0.113.{seq % addresses + 1}"
    return (
        f"{stamp} web1 sshd[{1000 + seq % 5000}]: "
        f"Failed password for user{seq} from {address} port {seq} ssh2"
    )


def sshd_failure_lines(seqs: Iterable[int], addresses: int = 250) -> list[str]:
    """Return `sshd_failure_line` for each number."""
    return [sshd_failure_line(seq, addresses) for seq in seqs]


def write_daemon_config(folder: Path, *, start_at: str = "beginning", **settings: Any) -> Path:
    """Write a config for daemon tests: the sshd rules only, a 0.2 s poll, and `settings`."""
    document = {
        "start_at": start_at,
        "poll_interval_seconds": 0.2,
        "rules": {"files": [str(SSHD_RULES)]},
        **settings,
    }
    path = folder / "irwatchd-test.yaml"
    path.write_text(json.dumps(document))  # JSON is YAML
    return path


def finding_originals(state_dir: Path, rule_id: str = SSHD_FAILURE_RULE) -> list[str]:
    """Return the raw line of every finding record of one rule, across rotated audit files."""
    from irwatchd.audit.log import chain_files

    marker = f'"id":"{rule_id}"'.encode()
    originals = []
    for path in chain_files(state_dir / "audit.jsonl"):
        for raw in path.read_bytes().split(b"\n"):
            if b'"action":"finding"' in raw and marker in raw:
                originals.append(json.loads(raw)["event"]["original"])
    return originals


def sequence_counts(originals: Iterable[str]) -> Counter[int]:
    """Count how often each sequence number of `sshd_failure_line` occurs."""
    counts: Counter[int] = Counter()
    for original in originals:
        match = _SEQUENCE.search(original)
        if match is not None:
            counts[int(match.group(1))] += 1
    return counts


def start_daemon(
    state_dir: Path,
    watches: list[str],
    *extra: str,
    config: Path,
    prefix: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    log_dir: Path | None = None,
) -> DaemonProcess:
    """Start `irwatchd run` (after the `prefix` command, such as setpriv) and wait until ready.

    The caller stops it, with `DaemonProcess.stop` or a signal. Each start logs to a file of
    its own in `log_dir` (default: the state folder's parent), so `log_text` shows only this
    process.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    logs = state_dir.parent if log_dir is None else log_dir
    starts = len(list(logs.glob(f"{state_dir.name}.stderr.*.log")))
    stderr_path = logs / f"{state_dir.name}.stderr.{starts + 1}.log"
    arguments = ["run", "-c", str(config), "--state-dir", str(state_dir)]
    for watch in watches:
        arguments += ["--watch", watch]
    with stderr_path.open("ab") as stderr:
        process = subprocess.Popen(
            [*prefix, *irwatchd_command(*arguments, *extra)], cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, **(env or {})},
        )  # fmt: skip
    daemon = DaemonProcess(process, state_dir, stderr_path)
    STARTED_DAEMONS.append(daemon)
    try:
        daemon.wait_ready(timeout=60)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return daemon


STARTED_DAEMONS: list[DaemonProcess] = []
"""Daemons `start_daemon` started; `tests/conftest.py` kills any a failed test left running."""


def kill_started_daemons() -> None:
    """Kill the daemons that `start_daemon` started and that still run, and forget them all."""
    for daemon in STARTED_DAEMONS:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait(timeout=20)
    STARTED_DAEMONS.clear()


def log_events(daemon: DaemonProcess, event: str) -> list[dict[str, Any]]:
    """Return the daemon's JSON log entries of one event."""
    entries = []
    for raw in daemon.log_text().splitlines():
        if f'"{event}"' in raw:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if entry.get("event") == event:
                entries.append(entry)
    return entries


# Service tests: a small rule set that compiles in milliseconds, and a systemd notify socket.

SERVICE_RULES = """\
rules:
  - id: test-ssh-failed
    category: failed_login
    severity: low
    severity_reason: one failure is routine
    description: sshd rejected a password
    source_types: [syslog]
    pattern: 'sshd\\[\\d+\\]: Failed password for (?P<user>\\S+) from (?P<source_ip>[0-9a-f.:]+) port \\d+'
    examples:
      match:
        - line: 'Dec 10 06:55:48 host sshd[1]: Failed password for root from 192.0.2.1 port 22 ssh2'
          fields: {source_ip: 192.0.2.1, user: root}
  - id: test-sudo-denied
    category: privilege_escalation
    severity: high
    severity_reason: a user without sudo rights tried sudo
    description: sudo refused a user who is not in sudoers
    source_types: [syslog]
    pattern: 'sudo: +(?P<user>\\S+) : user NOT in sudoers'
"""


def write_service_config(folder: Path, **settings: Any) -> Path:
    """Write `irwatchd.yaml` and `rules.d/10-test.yaml` (two rules) for service tests."""
    rules = folder / "rules.d"
    rules.mkdir(parents=True, exist_ok=True)
    (rules / "10-test.yaml").write_text(SERVICE_RULES)
    document = {
        "start_at": "beginning",
        "poll_interval_seconds": 0.2,
        "rules": {"files": ["rules.d/*.yaml"]},
        **settings,
    }
    path = folder / "irwatchd.yaml"
    path.write_text(json.dumps(document))  # JSON is YAML
    return path


def ssh_failure(address: str, seq: int = 1) -> str:
    """Return an sshd line that the service rules' `test-ssh-failed` matches."""
    return f"Dec  4 10:00:00 web1 sshd[{100 + seq}]: Failed password for user{seq} from {address} port {seq} ssh2"


def sudo_denied(user: str) -> str:
    """Return a sudo line that the service rules' `test-sudo-denied` matches."""
    return f"Dec  4 10:00:00 web1 sudo:  {user} : user NOT in sudoers ; TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/id"


class NotifySocket:
    """A datagram socket standing in for systemd's `$NOTIFY_SOCKET`, recording each message."""

    def __init__(self, path: Path) -> None:
        import socket

        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        self._socket.setblocking(False)
        self.messages: list[dict[str, str]] = []

    def receive(self) -> list[dict[str, str]]:
        """Read every waiting datagram and return all messages so far, as field dicts."""
        while True:
            try:
                data = self._socket.recv(65536)
            except BlockingIOError:
                return self.messages
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append(fields)

    def wait_for(self, key: str, count: int = 1, timeout: float = 30.0) -> list[dict[str, str]]:
        """Wait until `count` messages carry `key`, and return all messages so far."""
        wait_until(lambda: sum(key in message for message in self.receive()) >= count, timeout)
        return self.messages

    def close(self) -> None:
        """Close and remove the socket."""
        self._socket.close()
        self.path.unlink(missing_ok=True)


def run_without_override(*args: str) -> subprocess.CompletedProcess[str]:
    """Run irwatchd as root without the capabilities that bypass file modes."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv(1) to drop the capability that bypasses file modes")
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]
    return subprocess.run(
        [*prefix, *irwatchd_command(*args)], cwd=ROOT, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


def fill(folder: Path) -> Path:
    """Write a file until the filesystem is full, and return it."""
    filler = folder / "filler"
    chunk = b"\0" * 4096
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(chunk)
        except OSError:
            pass
    return filler
