#!/bin/bash
# Run every benchmark in sequence and keep the output; see docs/benchmarks.md for what each
# line means. Needs GNU time and fail2ban (apt-get install -y time fail2ban); the nftables
# burst also needs root, /usr/sbin/ip and /usr/sbin/nft, and is skipped without them.
# Usage: bench/run_all.sh [RESULTS_FILE] [all|daemon|throughput]
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python3}"
out="${1:-${TMPDIR:-/tmp}/irwatchd-bench/results-$(date -u +%Y%m%dT%H%M%SZ).txt}"
part="${2:-all}"
mkdir -p "$(dirname "$out")"
stamp() { echo "bench: $1 utc=$(date -u +%Y-%m-%dT%H:%M:%SZ) loadavg=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' _)"; }
{
    stamp start
    # Each daemon benchmark starts after `sync`, because the scans above leave hundreds of MB of
    # dirty pages, whose writeback would otherwise land in the daemon's fsyncs.
    if [ "$part" != daemon ]; then
        "$python" "$here/throughput.py"
        sync
        "$python" "$here/live_latency.py"
    fi
    if [ "$part" != throughput ]; then
        sync
        "$python" "$here/burst.py" --backend simulate
        sync
        "$python" "$here/burst.py" --backend nftables
        sync
        "$python" "$here/daemon_memory.py"
        # Removed only now: deleting them between the bursts slows the next one's file creates.
        rm -rf "${TMPDIR:-/tmp}"/irwatchd-bench/burst-*
    fi
    stamp end
} 2>&1 | tee -a "$out"
echo "results saved in $out"
