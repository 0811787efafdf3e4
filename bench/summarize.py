"""Turn the `bench:` lines of a run_all.sh results file into the Markdown tables of docs/benchmarks.md.

Usage: `python bench/summarize.py RESULTS_FILE`. Each table row keeps the figure's own
measurement line, so the doc and the raw output can be checked against each other.
"""

from __future__ import annotations

import sys
from pathlib import Path


def parse(path: Path) -> dict[str, dict[str, str]]:
    """Return each `bench: NAME k=v ...` line as {NAME: {k: v}}; a repeated NAME keeps the last."""
    results: dict[str, dict[str, str]] = {}
    for line in path.read_text().splitlines():
        if not line.startswith("bench: "):
            continue
        name, _, rest = line[len("bench: ") :].partition(" ")
        fields = dict(item.split("=", 1) for item in rest.split() if "=" in item)
        results.setdefault(name, {}).update(fields)
    return results


def row(results: dict[str, dict[str, str]], name: str, label: str) -> str:
    fields = results.get(name)
    if fields is None:
        return f"| {label} | not run | | |"
    return (
        f"| {label} | {fields.get('lines_per_s', '')} | {fields.get('seconds', '')} "
        f"| {fields.get('peak_rss_mib', '')} |"
    )


def main() -> None:
    results = parse(Path(sys.argv[1]))
    print("| command | lines/s | seconds | peak RSS MiB |")
    print("| --- | ---: | ---: | ---: |")
    for kind in ("auth", "access", "auth_quiet"):
        print(row(results, f"{kind}.irwatchd_detect", f"{kind}: irwatchd detect"))
        print(row(results, f"{kind}.irwatchd_detect_jobs2", f"{kind}: irwatchd detect --jobs 2"))
        print(row(results, f"{kind}.irwatchd_scan", f"{kind}: irwatchd scan"))
        for name in sorted(results):
            if name.startswith(f"{kind}.fail2ban_regex."):
                label = f"{kind}: fail2ban-regex {name.rpartition('.')[2]}"
                print(row(results, name, label))
        print(row(results, f"{kind}.grep_cE", f"{kind}: LC_ALL=C grep -cE"))
    print()
    for name in ("startup.detect_empty_file", "auth.ratio", "access.ratio", "auth_quiet.ratio", "live_latency", "burst.simulate", "burst.nftables",
                 "daemon_memory"):  # fmt: skip
        if name in results:
            pairs = ", ".join(f"{key} {value}" for key, value in results[name].items())
            print(f"- `{name}`: {pairs}")


if __name__ == "__main__":
    main()
