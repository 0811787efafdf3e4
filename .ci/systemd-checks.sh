#!/bin/bash
# Check the systemd files in systemd/: the unit alone and with the nftables drop-in.
#   1. systemd-analyze verify, where any warning (an unknown key, a missing program) fails;
#   2. systemd-analyze security --offline=yes, failing when the exposure score is above the
#      threshold (systemd's 0-10 scale, times 10: 15 means 1.5);
#   3. systemd-sysusers on irwatchd.sysusers, into a scratch root.
# Needs the systemd package. Runs as root, because verify requires ExecStart's program to
# exist: when /usr/bin/irwatchd is missing, an executable stub replaces it until exit.
set -euo pipefail
cd "$(dirname "$0")/.."

unit=systemd/irwatchd.service
dropin=systemd/irwatchd-nftables.conf
sysusers=$PWD/systemd/irwatchd.sysusers
program=/usr/bin/irwatchd
threshold_unit=${IRWATCHD_EXPOSURE_THRESHOLD:-15}
threshold_nftables=${IRWATCHD_EXPOSURE_THRESHOLD_NFTABLES:-20}

for tool in systemd-analyze systemd-sysusers; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "systemd-checks: $tool not found; install it with: apt-get install systemd" >&2
        exit 69
    fi
done

scratch=$(mktemp -d)
stub=""
cleanup() {
    rm -rf "$scratch"
    if [ -n "$stub" ]; then
        rm -f "$stub"
    fi
}
trap cleanup EXIT

if [ ! -e "$program" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "systemd-checks: $program is missing and only root may create the stand-in" >&2
        exit 77
    fi
    printf '#!/bin/sh\nexit 0\n' >"$program"
    chmod 0755 "$program"
    stub=$program
fi

failures=0

# check NAME THRESHOLD DIRECTORY: verify and score the unit in DIRECTORY.
check() {
    local name=$1 threshold=$2 directory=$3
    local output
    # verify prints unknown keys as warnings and still exits 0, so any output is a failure.
    if ! output=$(systemd-analyze verify "$directory/irwatchd.service" 2>&1) || [ -n "$output" ]; then
        echo "FAIL $name: systemd-analyze verify:" >&2
        echo "$output" >&2
        failures=$((failures + 1))
    else
        echo "ok   $name: systemd-analyze verify"
    fi
    local score
    score=$(systemd-analyze security --offline=yes "$directory/irwatchd.service" 2>&1 | tail -n 1)
    if systemd-analyze security --offline=yes --threshold="$threshold" \
        "$directory/irwatchd.service" >/dev/null 2>&1; then
        echo "ok   $name: ${score#→ } (threshold $threshold)"
    else
        echo "FAIL $name: ${score#→ } is above the threshold $threshold" >&2
        systemd-analyze security --offline=yes "$directory/irwatchd.service" 2>&1 | grep '✗' >&2 || true
        failures=$((failures + 1))
    fi
}

mkdir "$scratch/unit" "$scratch/nftables" "$scratch/nftables/irwatchd.service.d"
cp "$unit" "$scratch/unit/irwatchd.service"
cp "$unit" "$scratch/nftables/irwatchd.service"
cp "$dropin" "$scratch/nftables/irwatchd.service.d/nftables.conf"
check "unit" "$threshold_unit" "$scratch/unit"
check "unit + nftables drop-in" "$threshold_nftables" "$scratch/nftables"

mkdir -p "$scratch/root/etc"
if output=$(systemd-sysusers --root="$scratch/root" "$sysusers" 2>&1) \
    && grep -q '^irwatchd:' "$scratch/root/etc/passwd"; then
    echo "ok   sysusers: creates the irwatchd user"
else
    echo "FAIL sysusers: $output" >&2
    failures=$((failures + 1))
fi

if [ "$failures" -gt 0 ]; then
    echo "systemd-checks: $failures check(s) failed" >&2
    exit 1
fi
