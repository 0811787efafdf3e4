"""Turn the `bench:` lines of a run_all.sh results file into the Markdown of docs/benchmarks.md.

Usage: `python bench/summarize.py RESULTS_FILE`. It prints the machine facts, the throughput
table, the daemon figures and each target with its measured value, all from the raw lines.
"""

from __future__ import annotations

import sys
from pathlib import Path


def parse(path: Path) -> dict[str, dict[str, str]]:
    """Return each `bench: NAME k=v ...` line as {NAME: {k: v}}; repeated NAMEs are merged."""
    results: dict[str, dict[str, str]] = {}
    for line in path.read_text().splitlines():
        if not line.startswith("bench: "):
            continue
        name, _, rest = line[len("bench: ") :].partition(" ")
        fields = dict(item.split("=", 1) for item in rest.split() if "=" in item)
        results.setdefault(name, {}).update(fields)
    return results


def number(results: dict[str, dict[str, str]], name: str, key: str) -> float | None:
    try:
        return float(results[name][key])
    except (KeyError, ValueError):
        return None


def throughput_rows(results: dict[str, dict[str, str]]) -> list[str]:
    rows = ["| input | command | lines/s | seconds | CPU user s | peak RSS MiB |",
            "| --- | --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for kind in ("auth", "auth_quiet", "access"):
        names = [
            f"{kind}.irwatchd_detect",
            f"{kind}.irwatchd_detect_jobs1",
            f"{kind}.irwatchd_scan",
        ]
        names += sorted(name for name in results if name.startswith(f"{kind}.fail2ban_regex."))
        names.append(f"{kind}.grep_cE")
        for name in names:
            fields = results.get(name)
            if fields is None:
                continue
            label = (
                name.partition(".")[2]
                .replace("_", " ")
                .replace("fail2ban regex.", "fail2ban-regex ")
            )
            rows.append(
                f"| {kind} | {label} | {fields.get('lines_per_s', '')} | {fields.get('seconds', '')} "
                f"| {fields.get('user_s', '')} | {fields.get('peak_rss_mib', '')} |"
            )
    return rows


def verdict(value: float | None, limit: float, higher_is_better: bool) -> str:
    if value is None:
        return "not measured"
    met = value >= limit if higher_is_better else value < limit
    return "met" if met else "missed"


def target_rows(results: dict[str, dict[str, str]]) -> list[str]:
    rows = ["| target | measured | verdict |", "| --- | ---: | --- |"]
    checks = [
        ("auth.log: detect ≥ 30× fail2ban-regex sshd", number(results, "auth.ratio", "detect_vs_fail2ban"), 30, True),
        ("auth.log: detect --jobs 1 ≥ 30× fail2ban-regex sshd (context, not a target)", number(results, "auth.ratio", "detect_jobs1_vs_fail2ban"), 30, True),
        ("quiet auth.log: detect ≥ 30× fail2ban-regex sshd (context, not a target)", number(results, "auth_quiet.ratio", "detect_vs_fail2ban"), 30, True),
        ("auth.log: detect within 6× of grep (detect time / grep time)", number(results, "auth.ratio", "detect_slower_than_grep"), 6, False),
        ("access log: detect ≥ 10× the four web filters", number(results, "access.ratio", "detect_vs_fail2ban"), 10, True),
        ("auth.log: fail2ban peak RSS / detect peak RSS ≥ 10", number(results, "auth.ratio", "fail2ban_rss_over_detect_rss"), 10, True),
        ("auth.log: fail2ban peak RSS / scan peak RSS ≥ 10", number(results, "auth.ratio", "fail2ban_rss_over_scan_rss"), 10, True),
        ("live p99 write→block < 50 ms at 5,000 lines/s", number(results, "live_latency", "p99_ms"), 50, False),
        ("10,000-source burst fully blocked (simulated) < 2 s after the last write", number(results, "burst.simulate", "audit_all_blocked_after_last_write_s"), 2, False),
        ("10,000-source burst in nftables < 10 s after the last write", number(results, "burst.nftables", "nft_all_elements_after_last_write_s"), 10, False),
        ("daemon peak RSS, 1,000,000 lines from 100,000 sources < 150 MiB", number(results, "daemon_memory", "peak_rss_mib"), 150, False),
    ]  # fmt: skip
    for label, value, limit, higher_is_better in checks:
        if value is not None:
            rows.append(f"| {label} | {value:g} | {verdict(value, limit, higher_is_better)} |")
        elif "burst" in label:
            rows.append(f"| {label} | not all blocked within the wait | missed |")
        else:
            rows.append(f"| {label} | | not measured |")
    return rows


def main() -> None:
    results = parse(Path(sys.argv[1]))
    machine = results.get("machine", {})
    print("\n".join(f"- {key}: {value.replace('_', ' ')}" for key, value in machine.items()))
    print()
    print("\n".join(throughput_rows(results)))
    print()
    for name in ("startup.detect_empty_file", "auth.ratio", "auth_quiet.ratio", "access.ratio",
                 "live_latency", "burst.simulate", "burst.nftables", "daemon_memory"):  # fmt: skip
        if name in results:
            pairs = ", ".join(f"{key} {value}" for key, value in results[name].items())
            print(f"- `{name}`: {pairs}")
    print()
    print("\n".join(target_rows(results)))


if __name__ == "__main__":
    main()
