#!/bin/bash
# Run every benchmark in sequence and keep the output; see docs/benchmarks.md for what each
# line means. Needs GNU time and fail2ban (apt-get install -y time fail2ban); the nftables
# burst also needs root, /usr/sbin/ip and /usr/sbin/nft, and is skipped without them.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python3}"
out="${1:-${TMPDIR:-/tmp}/irwatchd-bench/results-$(date -u +%Y%m%dT%H%M%SZ).txt}"
mkdir -p "$(dirname "$out")"
{
    echo "bench: start utc=$(date -u +%Y-%m-%dT%H:%M:%SZ) loadavg=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' _)"
    "$python" "$here/throughput.py"
    "$python" "$here/live_latency.py"
    "$python" "$here/burst.py" --backend simulate
    "$python" "$here/burst.py" --backend nftables
    "$python" "$here/daemon_memory.py"
    echo "bench: end utc=$(date -u +%Y-%m-%dT%H:%M:%SZ) loadavg=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' _)"
} 2>&1 | tee "$out"
echo "results saved in $out"
