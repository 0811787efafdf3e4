"""Live latency: from writing a new source's fifth sshd failure to its block in the audit log.

The daemon watches one auth.log. A writer thread appends background lines at a steady rate
(default 5,000 lines/s, cron, sudo and log-in noise that matches no rule) and, every
`--interval` seconds, starts a new source from 2001:db8:1::/48 that fails five times
`--spacing` seconds apart. The brute-force correlation (5 failures in 600 s) then makes a
high-severity incident, which the default policy blocks (simulated back-end). A follower
thread reads audit.jsonl every millisecond and stamps each block record.

Latency = time the block record was seen - time the write of the fifth failure returned.
The blocking rate cap is raised so that the cap never delays a measured block.

Usage: `python bench/live_latency.py [--sources 200] [--rate 5000]`.
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import random
import statistics
import threading
import time
from pathlib import Path

from common import DEFAULT_WORKDIR, machine_facts, report
from daemon_harness import Appender, DaemonUnderTest, block_address, run_in_thread, syslog_stamp

_BENIGN = (
    "CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
    "CRON[{pid}]: pam_unix(cron:session): session closed for user root",
    "sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/apt update",
    "sudo: pam_unix(sudo:session): session opened for user root(uid=0) by alice(uid=1000)",
    "sshd[{pid}]: Accepted publickey for deploy from 198.51.100.201 port {port} ssh2: ED25519 SHA256:x",
    "sshd[{pid}]: pam_unix(sshd:session): session opened for user deploy(uid=1000) by (uid=0)",
    "systemd-logind[412]: New session {pid} of user deploy.",
)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR / "live")
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--rate", type=int, default=5000, help="background lines per second")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between new sources")
    parser.add_argument("--spacing", type=float, default=0.02, help="seconds between failures")
    parser.add_argument("--seed", type=int, default=20261204)
    args = parser.parse_args()
    report("machine", **machine_facts())
    rng = random.Random(args.seed)
    daemon = DaemonUnderTest(args.workdir, {"blocking.max_blocks_per_minute": 1_000_000})
    daemon.start()
    # Canonical spellings, as the audit log writes them.
    sources = [
        str(ipaddress.IPv6Address(f"2001:db8:1:{index + 1:x}::1")) for index in range(args.sources)
    ]
    written_at: dict[str, float] = {}
    blocked_at: dict[str, float] = {}
    stop_following = threading.Event()

    def follow() -> None:
        while not stop_following.is_set():
            for seen, record in daemon.audit.poll():
                address = block_address(record)
                if address is not None and address not in blocked_at:
                    blocked_at[address] = seen
            time.sleep(0.001)

    follower = run_in_thread(follow)
    appender = Appender(daemon.log_path)
    cpu_before = daemon.cpu_seconds()
    warmup = 2.0
    schedule = sorted(
        (warmup + index * args.interval + attempt * args.spacing, attempt, address)
        for index, address in enumerate(sources)
        for attempt in range(5)
    )
    started = time.monotonic()
    background_written = 0
    pending = iter(schedule)
    upcoming = next(pending, None)
    end = warmup + len(sources) * args.interval + 1.0
    pids = itertools.count(2000)
    while True:
        elapsed = time.monotonic() - started
        if elapsed > end:
            break
        stamp = syslog_stamp()
        due = int(elapsed * args.rate) - background_written
        batch = [
            f"{stamp} bastion "
            + rng.choice(_BENIGN).format(pid=next(pids), port=rng.randint(1024, 65535))
            for _ in range(due)
        ]
        appender.write(batch)
        background_written += due
        while upcoming is not None and upcoming[0] <= elapsed:
            _, attempt, address = upcoming
            appender.write([f"{stamp} bastion sshd[{next(pids)}]: Failed password for invalid user "
                            f"admin from {address} port {rng.randint(1024, 65535)} ssh2"])  # fmt: skip
            if attempt == 4:
                written_at[address] = time.monotonic()
            upcoming = next(pending, None)
        time.sleep(0.005)
    writing_seconds = time.monotonic() - started
    deadline = time.monotonic() + 30
    while (
        len(blocked_at.keys() & written_at.keys()) < len(written_at) and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    stop_following.set()
    follower.join()
    cpu_used = daemon.cpu_seconds() - cpu_before
    peak = daemon.peak_rss_mib()
    appender.close()
    daemon.stop()
    latencies = [
        (blocked_at[address] - written_at[address]) * 1000
        for address in written_at
        if address in blocked_at
    ]
    missing = len(written_at) - len(latencies)
    if not latencies:
        report("live_latency", error="no_block_seen", sources=len(written_at))
        return
    report("live_latency", sources=len(written_at), blocked=len(latencies), missing=missing,
           background_lines_per_s=round(background_written / writing_seconds),
           p50_ms=statistics.median(latencies), p99_ms=percentile(latencies, 0.99),
           max_ms=max(latencies), daemon_cpu_share=cpu_used / writing_seconds,
           daemon_peak_rss_mib=peak)  # fmt: skip


if __name__ == "__main__":
    main()
