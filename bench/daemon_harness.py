"""Run `irwatchd run` as a real subprocess on a watched file, and follow its audit log.

Used by live_latency.py, burst.py and daemon_memory.py. The daemon gets the default config
(etc/irwatchd.yaml, every rule in etc/rules.d) with only the state folder, the watched file and
the keys a benchmark names replaced.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from common import IRWATCHD, REPO, read_jsonl


def syslog_stamp(moment: float | None = None) -> str:
    """Format a Unix time as a traditional syslog time in UTC, for example `Dec  4 16:07:12`."""
    return time.strftime("%b %e %H:%M:%S", time.gmtime(time.time() if moment is None else moment))


class AuditFollower:
    """Reads `audit.jsonl` as it grows and stamps each record with the time it was seen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def poll(self) -> list[tuple[float, dict[str, Any]]]:
        """Return the records appended since the last call, each with `time.monotonic()`."""
        records, self._offset = read_jsonl(self.path, self._offset)
        seen = time.monotonic()
        return [(seen, record) for record in records]


def block_address(record: dict[str, Any]) -> str | None:
    """Return `source.ip` of a successful block record, else None."""
    event = record.get("event") or {}
    if event.get("action") != "block" or event.get("outcome") != "success":
        return None
    return (record.get("source") or {}).get("ip")


class DaemonUnderTest:
    """One `irwatchd run` process watching `workdir/logs/auth.log`, with its own state folder."""

    def __init__(
        self,
        workdir: Path,
        overrides: dict[str, Any] | None = None,
        *,
        netns: str | None = None,
        source_type: str = "syslog",
    ) -> None:
        self.workdir = workdir
        self.state = workdir / "state"
        self.log_path = workdir / "logs" / "auth.log"
        self.config_path = workdir / "irwatchd.yaml"
        self.overrides = overrides or {}
        self.netns = netns
        self.source_type = source_type
        self.process: subprocess.Popen[bytes] | None = None
        self.audit = AuditFollower(self.state / "audit.jsonl")

    def write_config(self) -> None:
        config = yaml.safe_load((REPO / "etc" / "irwatchd.yaml").read_text())
        config["state_dir"] = str(self.state)
        config["rules"]["files"] = [str(REPO / "etc" / "rules.d" / "*.yaml")]
        for dotted, value in self.overrides.items():
            section = config
            *parents, leaf = dotted.split(".")
            for name in parents:
                section = section.setdefault(name, {})
            section[leaf] = value
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def start(self, timeout: float = 120.0) -> None:
        """Start the daemon on an empty watched file and wait for its `start` audit record."""
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.log_path.parent.mkdir(parents=True)
        self.log_path.touch()
        self.write_config()
        argv = [*IRWATCHD, "--log-level", "warning", "run", "-c", str(self.config_path),
                "--state-dir", str(self.state), "--watch", f"{self.log_path}:{self.source_type}"]  # fmt: skip
        profile = os.environ.get("BENCH_DAEMON_PROFILE")
        if profile:
            # cProfile output of the daemon, written when it stops, for finding hot spots.
            argv = [argv[0], "-m", "cProfile", "-o", profile, *argv[1:]]
        if self.netns is not None:
            argv = ["/usr/sbin/ip", "netns", "exec", self.netns, *argv]
        stderr = (self.workdir / "daemon.stderr").open("wb")
        self.process = subprocess.Popen(argv, cwd=REPO, stdout=stderr, stderr=stderr)
        wait_until(self._started, timeout, "the daemon's start record in audit.jsonl")

    def _started(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            detail = (self.workdir / "daemon.stderr").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"irwatchd run exited with {self.process.returncode}:\n{detail}")
        for _, record in self.audit.poll():
            if (record.get("event") or {}).get("action") == "start":
                return True
        return False

    def daemon_pid(self) -> int:
        """Return the PID of the daemon itself (not of `ip netns exec`, which execs it anyway)."""
        assert self.process is not None
        return self.process.pid

    def peak_rss_mib(self) -> float:
        """Return the daemon's peak resident set size so far (VmHWM), in MiB."""
        with open(f"/proc/{self.daemon_pid()}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("VmHWM missing from /proc status")

    def cpu_seconds(self) -> float:
        """Return the daemon's user plus system CPU time so far."""
        with open(f"/proc/{self.daemon_pid()}/stat", encoding="ascii") as stat_file:
            fields = stat_file.read().rpartition(")")[2].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self, timeout: float = 60.0) -> int | None:
        """Send SIGTERM and wait; kill only if it does not stop in time."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


class Appender:
    """Appends lines to the watched file with O_APPEND, one write call per batch."""

    def __init__(self, path: Path) -> None:
        self._descriptor = os.open(path, os.O_WRONLY | os.O_APPEND)

    def write(self, lines: list[str]) -> None:
        if lines:
            os.write(self._descriptor, ("\n".join(lines) + "\n").encode())

    def close(self) -> None:
        os.close(self._descriptor)


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.05
) -> None:
    """Poll `predicate` until it is true; raise TimeoutError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def run_in_thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread
