"""Shared helpers for the benchmark scripts: paths, timed subprocesses, machine facts, output.

Each script prints one summary line per measurement, `bench: NAME key=value ...`, so a run's
output can be pasted into docs/benchmarks.md or grepped.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
IRWATCHD = [PYTHON, "-m", "irwatchd"]
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "irwatchd-bench"
TIME_BINARY = "/usr/bin/time"


@dataclass(frozen=True, slots=True)
class Timed:
    """One finished command: wall, user and system seconds, peak RSS and exit code."""

    wall_seconds: float
    user_seconds: float
    system_seconds: float
    peak_rss_mib: float | None
    returncode: int


def run_timed(
    argv: list[str],
    *,
    stdout: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 1800,
) -> Timed:
    """Run `argv` (absolute program path first) under GNU time and return what it measured.

    Standard output goes to `stdout` (or is discarded); standard error is kept for the error.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        command = [TIME_BINARY, "-f", "%e %U %S %M", "-o", report.name, *argv]
        sink = stdout.open("wb") if stdout is not None else subprocess.DEVNULL
        try:
            started = time.monotonic()
            finished = subprocess.run(
                command,
                stdout=sink,
                stderr=subprocess.PIPE,
                env=env,
                cwd=REPO,
                timeout=timeout,
                check=False,
            )
            wall = time.monotonic() - started
        finally:
            if stdout is not None:
                sink.close()  # type: ignore[union-attr]
        fields = report.read().split()
    if finished.returncode != 0:
        message = finished.stderr.decode(errors="replace")[-2000:]
        print(f"bench: command failed ({finished.returncode}): {argv}\n{message}", file=sys.stderr)
    try:
        _, user, system, peak_kib = fields[-4:]
        return Timed(wall, float(user), float(system), int(peak_kib) / 1024, finished.returncode)
    except ValueError:
        return Timed(wall, 0.0, 0.0, None, finished.returncode)


def run_median(argv: list[str], runs: int = 3, **options: Any) -> tuple[Timed, list[float]]:
    """Run `argv` `runs` times; return the run of median wall time and every wall time.

    On a shared machine one short run can take a quarter longer than the next, so runs of a
    second or two are repeated, while runs of half a minute are not.
    """
    results = sorted((run_timed(argv, **options) for _ in range(runs)),
                     key=lambda timed: timed.wall_seconds)  # fmt: skip
    return results[len(results) // 2], [timed.wall_seconds for timed in results]


def compile_bytecode() -> None:
    """Write the package's bytecode files, as a regular `pip install` does.

    An editable install writes them only on first import, and not at all where
    PYTHONDONTWRITEBYTECODE is set. Then each run compiles every module again (about 0.07 s).
    """
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(REPO / "irwatchd")], check=True)


def require_time_binary() -> None:
    """Exit with a clear message when GNU time is missing."""
    if not Path(TIME_BINARY).exists():
        sys.exit(f"bench: {TIME_BINARY} is missing; install it with `apt-get install -y time`")


def machine_facts() -> dict[str, str]:
    """Return the facts docs/benchmarks.md records for a run: CPUs, model, RAM, versions, load."""
    facts = {
        "nproc": str(os.cpu_count()),
        "python": platform.python_version(),
        "loadavg": " ".join(f"{value:.2f}" for value in os.getloadavg()),
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    lscpu = shutil.which("lscpu")
    if lscpu:
        output = subprocess.run(
            [lscpu], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        for line in output.splitlines():
            if line.startswith("Model name:"):
                facts["cpu"] = line.partition(":")[2].strip()
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                facts["ram_gib"] = f"{int(line.split()[1]) / 1024 / 1024:.1f}"
    fail2ban = shutil.which("fail2ban-regex")
    if fail2ban:
        version = subprocess.run(
            [fail2ban, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
        facts["fail2ban"] = version.stdout.strip().splitlines()[0] if version.stdout else "?"
    return facts


def report(name: str, **fields: object) -> None:
    """Print one summary line: `bench: NAME key=value ...`."""
    parts = [f"{key}={_format(value)}" for key, value in fields.items()]
    print(f"bench: {name} " + " ".join(parts), flush=True)


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    return str(value).replace(" ", "_")


def read_jsonl(path: Path, offset: int = 0) -> tuple[list[dict[str, object]], int]:
    """Read the complete JSON lines of `path` after byte `offset`; return them and the new offset."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    records = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
    return records, offset + end
