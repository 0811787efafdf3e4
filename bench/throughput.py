"""Throughput and peak memory of `irwatchd detect` and `irwatchd scan` against fail2ban and grep.

For each generated input (a 1,000,000-line auth.log and a 1,000,000-line access log, see
bench/generate.py) this runs, one after another on the same machine:

- `irwatchd detect FILE` (one process per CPU), `irwatchd detect --jobs 1 FILE` and
  `irwatchd scan --state-dir DIR FILE` with the default config;
- `fail2ban-regex FILE FILTER` with Debian's sshd filter (auth.log), or with each filter that
  reads access logs (apache-badbots, nginx-botsearch, nginx-bad-request, php-url-fopen);
- `LC_ALL=C grep -cE PATTERN FILE` with a pattern for the same failures or attacks.

Each command's wall time and peak RSS come from GNU time. Ratios compare lines per second
(and peak RSS) within this one run. `detect` runs three times before fail2ban-regex and three
times after it, in turn with grep's three runs, and the median of its six faces both. Usage: `python bench/throughput.py [--lines N] [--only auth]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import generate
from common import (
    DEFAULT_WORKDIR,
    IRWATCHD,
    Timed,
    compile_bytecode,
    machine_facts,
    report,
    require_time_binary,
    run_median,
    run_timed,
)

FAIL2BAN_FILTERS = {
    "auth": ["sshd"],
    "access": ["apache-badbots", "nginx-botsearch", "nginx-bad-request", "php-url-fopen"],
}
GREP_PATTERNS = {
    # sshd's failed authentication, invalid user and PAM failure lines, as the rules find them.
    "auth": r"sshd(-session)?\[[0-9]+\]: (Failed [a-z/-]+ for .* from [0-9A-Fa-f.:]+ port [0-9]+"
    r"|Invalid user .* from [0-9A-Fa-f.:]+|pam_unix\(sshd:auth\): authentication failure;.*rhost=)",
    # Common web attack markers, decoded and encoded.
    "access": r"(union.{1,20}select|sleep\(|%27|\.\./|\.\.%2[fF]|<script|%3[cC]script|=https?://"
    r"|;cat |/etc/passwd|wp-login|\.env|phpmyadmin|xmlrpc|sqlmap|nikto|\$\{jndi:|masscan)",
}


def lines_per_second(lines: int, timed: Timed) -> float:
    return lines / timed.wall_seconds if timed.wall_seconds > 0 else 0.0


def count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))


def bench_irwatchd(kind: str, log: Path, lines: int, workdir: Path) -> dict[str, Timed]:
    results = {}
    # Compile the rules now if they changed since the last run, so the compile cost (reported
    # by bench_startup) stays out of the throughput figures.
    empty = workdir / "empty.log"
    empty.write_bytes(b"")
    run_timed([*IRWATCHD, "detect", str(empty)])
    # The first three runs of `detect`; `bench_detect_and_grep` adds three more and reports.
    findings_path = workdir / f"detect-{kind}.jsonl"
    for number in range(3):
        results[f"detect_run_{number}"] = run_timed(
            [*IRWATCHD, "detect", str(log)], stdout=findings_path
        )
    # `detect` forks one worker per CPU for a large file; this is the one-process figure.
    single, walls = run_median([*IRWATCHD, "detect", "--jobs", "1", str(log)], stdout=findings_path)
    report(f"{kind}.irwatchd_detect_jobs1", lines=lines, seconds=single.wall_seconds,
           lines_per_s=round(lines_per_second(lines, single)), user_s=single.user_seconds,
           peak_rss_mib=single.peak_rss_mib, findings=count_lines(findings_path),
           exit=single.returncode, runs_s=_walls(walls))  # fmt: skip
    results["detect_jobs1"] = single
    state = workdir / f"scan-state-{kind}"
    shutil.rmtree(state, ignore_errors=True)
    scan = run_timed([*IRWATCHD, "scan", "--state-dir", str(state), str(log)])
    report(f"{kind}.irwatchd_scan", lines=lines, seconds=scan.wall_seconds,
           lines_per_s=round(lines_per_second(lines, scan)), user_s=scan.user_seconds,
           peak_rss_mib=scan.peak_rss_mib, exit=scan.returncode)  # fmt: skip
    results["scan"] = scan
    shutil.rmtree(state, ignore_errors=True)
    return results


def bench_fail2ban(name: str, kind: str, log: Path, lines: int) -> Timed | None:
    """Run each fail2ban filter for `kind`; return their summed time and highest peak RSS."""
    program = shutil.which("fail2ban-regex")
    if program is None:
        report(f"{name}.fail2ban", skipped="fail2ban-regex_not_installed")
        return None
    total_wall = total_user = 0.0
    peak = 0.0
    for filter_name in FAIL2BAN_FILTERS[kind]:
        filter_path = f"/etc/fail2ban/filter.d/{filter_name}.conf"
        timed = run_timed([program, str(log), filter_path])
        report(f"{name}.fail2ban_regex.{filter_name}", lines=lines, seconds=timed.wall_seconds,
               lines_per_s=round(lines_per_second(lines, timed)), user_s=timed.user_seconds,
               peak_rss_mib=timed.peak_rss_mib, exit=timed.returncode)  # fmt: skip
        total_wall += timed.wall_seconds
        total_user += timed.user_seconds
        peak = max(peak, timed.peak_rss_mib or 0.0)
    combined = Timed(total_wall, total_user, 0.0, peak, 0)
    if len(FAIL2BAN_FILTERS[kind]) > 1:
        report(f"{name}.fail2ban_regex.all_filters", lines=lines, seconds=total_wall,
               lines_per_s=round(lines_per_second(lines, combined)), peak_rss_mib=peak)  # fmt: skip
    return combined


def bench_detect_and_grep(
    name: str, kind: str, log: Path, lines: int, workdir: Path, earlier: list[Timed]
) -> tuple[Timed, Timed]:
    """Run `detect` and grep in turn three times; report both, `detect` with its earlier runs.

    The speed of a shared machine changes from minute to minute. `detect` runs three times
    before fail2ban-regex and three times after it, in turn with grep, so the median of its
    six runs faces fail2ban-regex and grep over the same minutes. The median of six is the
    slower of the two middle runs.
    """
    # The count goes to a file: GNU grep stops at the first match when output is /dev/null.
    program = shutil.which("grep") or "/usr/bin/grep"
    counted = workdir / f"grep-{name}.txt"
    findings_path = workdir / f"detect-{name}.jsonl"
    detects = list(earlier)
    greps = []
    for _ in range(3):
        detects.append(run_timed([*IRWATCHD, "detect", str(log)], stdout=findings_path))
        greps.append(
            run_timed(
                [program, "-cE", GREP_PATTERNS[kind], str(log)],
                stdout=counted,
                env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"},
            )
        )
    detect = _median(detects)
    grep = _median(greps)
    report(f"{name}.irwatchd_detect", lines=lines, seconds=detect.wall_seconds,
           lines_per_s=round(lines_per_second(lines, detect)), user_s=detect.user_seconds,
           peak_rss_mib=max(run.peak_rss_mib or 0 for run in detects),
           findings=count_lines(findings_path), exit=max(run.returncode for run in detects),
           runs_s=_walls([run.wall_seconds for run in detects]))  # fmt: skip
    report(f"{name}.grep_cE", lines=lines, seconds=grep.wall_seconds,
           lines_per_s=round(lines_per_second(lines, grep)), peak_rss_mib=grep.peak_rss_mib,
           matching_lines=counted.read_text().strip(), exit=grep.returncode,
           runs_s=_walls([run.wall_seconds for run in greps]))  # fmt: skip
    return detect, grep


def _median(runs: list[Timed]) -> Timed:
    """Return the run of median wall time, the slower middle one of an even number."""
    return sorted(runs, key=lambda run: run.wall_seconds)[len(runs) // 2]


def bench_startup(workdir: Path) -> None:
    """Time `detect` on an empty file with a cold Hyperscan cache, then warm the default cache.

    The cold run is the compile cost a first run (or a changed rule set) pays; every later
    measurement in this script runs with the cache warm.
    """
    empty = workdir / "empty.log"
    empty.parent.mkdir(parents=True, exist_ok=True)
    empty.write_bytes(b"")
    cold_cache = workdir / "cold-cache"
    shutil.rmtree(cold_cache, ignore_errors=True)
    environment = dict(os.environ, IRWATCHD_CACHE_DIR=str(cold_cache))
    cold = run_timed([*IRWATCHD, "detect", str(empty)], env=environment)
    shutil.rmtree(cold_cache, ignore_errors=True)
    run_timed([*IRWATCHD, "detect", str(empty)])
    warm = run_timed([*IRWATCHD, "detect", str(empty)])
    report("startup.detect_empty_file", cold_cache_seconds=cold.wall_seconds,
           cold_cache_peak_rss_mib=cold.peak_rss_mib, warm_cache_seconds=warm.wall_seconds,
           warm_cache_peak_rss_mib=warm.peak_rss_mib)  # fmt: skip


def _walls(walls: list[float]) -> str:
    """Return the wall times of repeated runs as one field, such as `1.08/1.12/1.31`."""
    return "/".join(f"{wall:.3g}" for wall in walls)


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description="irwatchd detect/scan against fail2ban and grep")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--lines", type=int, default=generate.DEFAULT_LINES)
    parser.add_argument("--seed", type=int, default=generate.DEFAULT_SEED)
    parser.add_argument(
        "--only", choices=["auth", "access", "auth_quiet"], help="run one input only"
    )
    args = parser.parse_args()
    require_time_binary()
    compile_bytecode()
    report("machine", **machine_facts())
    bench_startup(args.workdir)
    # (name, generator kind, sshd failure share): the default mix, and a quiet auth.log that
    # shows how the rate depends on how many lines are findings.
    inputs = [("auth", "auth", 0.28), ("access", "access", 0.28), ("auth_quiet", "auth", 0.02)]
    for name, kind, share in inputs:
        if args.only and args.only != name:
            continue
        log = generate.ensure(
            args.workdir / f"{name}-{args.lines}.log", kind, args.lines, args.seed, share
        )
        ours = bench_irwatchd(name, log, args.lines, args.workdir)
        theirs = bench_fail2ban(name, kind, log, args.lines)
        earlier = [ours[f"detect_run_{number}"] for number in range(3)]
        detect, grep = bench_detect_and_grep(name, kind, log, args.lines, args.workdir, earlier)
        scan = ours["scan"]
        if theirs is not None:
            report(f"{name}.ratio",
                   detect_vs_fail2ban=ratio(theirs.wall_seconds, detect.wall_seconds),
                   detect_jobs1_vs_fail2ban=ratio(theirs.wall_seconds, ours["detect_jobs1"].wall_seconds),
                   scan_vs_fail2ban=ratio(theirs.wall_seconds, scan.wall_seconds),
                   fail2ban_rss_over_detect_rss=ratio(theirs.peak_rss_mib or 0, detect.peak_rss_mib or 0),
                   fail2ban_rss_over_scan_rss=ratio(theirs.peak_rss_mib or 0, scan.peak_rss_mib or 0))  # fmt: skip
        report(
            f"{name}.ratio", detect_slower_than_grep=ratio(detect.wall_seconds, grep.wall_seconds)
        )


if __name__ == "__main__":
    main()
