"""Daemon memory: peak RSS after reading 1,000,000 auth.log lines from 100,000 distinct sources.

The daemon runs with the default config, whose sliding windows (100,000 sources) and open
incidents (20,000) are bounded. The generated auth.log (bench/generate.py, same mix as the
throughput input but with a pool of 100,000 documentation addresses) is appended to the watched
file in 8 MiB writes as fast as the daemon reads it. The script waits until the daemon's
checkpoint reaches the end of the file, then reads its peak RSS (VmHWM) from /proc. The time
taken is the daemon's end-to-end rate, with every finding audited and every policy action
run.

Usage: `python bench/daemon_memory.py [--lines 1000000] [--sources 100000]`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import generate
from common import DEFAULT_WORKDIR, machine_facts, report
from daemon_harness import DaemonUnderTest, wait_until

WRITE_BYTES = 8 << 20


def checkpoint_offset(state: Path) -> int:
    """Return the highest file offset in the daemon's checkpoints.json (0 before the first)."""
    try:
        document = json.loads((state / "checkpoints.json").read_text())
    except (FileNotFoundError, ValueError):
        return 0
    return max((entry.get("offset", 0) for entry in document.get("checkpoints", [])), default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR / "memory")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--sources", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=generate.DEFAULT_SEED)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    report("machine", **machine_facts())
    source_log = args.workdir.parent / f"auth-{args.lines}-{args.sources}-sources.log"
    if not source_log.exists():
        generate.write_lines(source_log, generate.auth_lines(args.lines, args.seed, args.sources))
    daemon = DaemonUnderTest(args.workdir)
    daemon.start()
    try:
        started = time.monotonic()
        size = 0
        with source_log.open("rb") as reader, daemon.log_path.open("ab") as writer:
            for block in iter(lambda: reader.read(WRITE_BYTES), b""):
                writer.write(block)
                writer.flush()
                size += len(block)
        wait_until(lambda: checkpoint_offset(daemon.state) >= size, args.timeout,
                   "the daemon's checkpoint to reach the end of the file", step=0.5)  # fmt: skip
        elapsed = time.monotonic() - started
        report("daemon_memory", lines=args.lines, sources=args.sources,
               peak_rss_mib=daemon.peak_rss_mib(), seconds=elapsed,
               lines_per_s=round(args.lines / elapsed), daemon_cpu_s=daemon.cpu_seconds())  # fmt: skip
    finally:
        daemon.stop()


if __name__ == "__main__":
    main()
