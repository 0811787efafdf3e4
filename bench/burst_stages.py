"""The daemon's stages on the burst's lines, timed in one process: where its CPU time goes.

`bench/burst.py` measures the whole daemon. This runs the functions the daemon's main loop
calls for each read on the same kind of lines: 10,000 sources with five sshd failures each,
in ten reads of 5,000 lines. The stages are `detect_lines_block` (prefilter, parse, RE2),
`ProcessContext.attribute`, `Responder.handle` for each finding, and `Responder.flush_records`
(blocks in the simulated back-end and audit records). Ticket and alert files, which the
daemon writes after a burst's blocks, are left out. The state goes to a new folder under the
bench work folder.

Usage: `python bench/burst_stages.py [--sources 10000]`.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import shutil
import sys
import time
from datetime import UTC, datetime

from common import DEFAULT_WORKDIR, REPO, machine_facts, report

sys.path.insert(0, str(REPO))

from msgspec.structs import replace

from irwatchd import logger
from irwatchd.audit.log import AuditLog
from irwatchd.config import LoadedConfig, load_config
from irwatchd.detection.batch import detect_lines_block
from irwatchd.detection.loader import build_detector
from irwatchd.detection.process_context import ProcessContext
from irwatchd.response.responder import (
    Responder,
    StatePaths,
    collector_paused,
    dedup_key,
)

READS = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sources", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=20261204)
    args = parser.parse_args()
    report("machine", **machine_facts())

    logger.configure("warning")
    loaded = load_config(REPO / "etc" / "irwatchd.yaml")
    # As in bench/burst.py: the default cap of 60 new blocks a minute would hold the burst back.
    blocking = replace(loaded.config.blocking, backend="simulate", max_blocks_per_minute=10**6)
    loaded = LoadedConfig(replace(loaded.config, blocking=blocking), loaded.path)
    detector = build_detector(loaded)
    state = DEFAULT_WORKDIR / f"burst-stages-{time.strftime('%Y%m%dT%H%M%S')}"
    paths = StatePaths(state)
    paths.create()
    responder = Responder(loaded, paths, AuditLog(paths.audit_log), live=True)
    context = ProcessContext()

    rng = random.Random(args.seed)
    addresses = [
        str(ipaddress.IPv6Address((0x20010DB80002 << 80) | (index + 1) << 64 | 1))
        for index in range(args.sources)
    ]
    stamp = datetime.now(UTC).strftime("%b %e %H:%M:%S")
    seconds = {"detect": 0.0, "attribute": 0.0, "handle": 0.0, "flush_records": 0.0}

    per_read = max(1, len(addresses) // READS)
    lines_done = offset = 0
    for start in range(0, len(addresses), per_read):
        lines = [
            f"{stamp} bastion sshd[{3000 + attempt}]: Failed password for root from "
            f"{address} port {rng.randint(1024, 65535)} ssh2"
            for address in addresses[start : start + per_read]
            for attempt in range(5)
        ]
        data = ("\n".join(lines) + "\n").encode()
        with collector_paused():
            began = time.perf_counter()
            stream = detect_lines_block(
                detector, data, "syslog", "/var/log/auth.log", 65536, datetime.now(UTC),
                lines_before=lines_done, offset_before=offset,
            )  # fmt: skip
            findings = list(stream)
            detected = time.perf_counter()
            attributed = context.attribute(findings)
            attributed_at = time.perf_counter()
            for finding in attributed:
                responder.handle(finding, key=dedup_key(finding))
            handled = time.perf_counter()
            responder.flush_records()
            flushed = time.perf_counter()
        seconds["detect"] += detected - began
        seconds["attribute"] += attributed_at - detected
        seconds["handle"] += handled - attributed_at
        seconds["flush_records"] += flushed - handled
        lines_done += len(lines)
        offset += len(data)

    blocked = len(responder.blocks.active())
    responder.close()
    shutil.rmtree(state, ignore_errors=True)
    report(
        "burst_stages",
        sources=args.sources,
        lines=lines_done,
        blocked=blocked,
        **{f"{name}_s": round(value, 3) for name, value in seconds.items()},
        total_s=round(sum(seconds.values()), 3),
        detect_us_per_line=round(seconds["detect"] / lines_done * 1e6, 1),
    )


if __name__ == "__main__":
    main()
