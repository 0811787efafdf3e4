"""Run the daemon on the bundled sample logs and show its findings and responses as they happen.

The daemon runs as a child process with its state in `var/demo/state/`, which this script
empties first, so every run starts with no blocks or incidents and shows each response again.
It creates empty log files under `var/demo/logs/`, appends the sample lines to them a few at a
time, and prints a line for each finding and action that appears in the audit log. The
daemon's own log goes to `var/demo/daemon.log`. Ctrl-C stops both.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
LOGS = {
    "auth.log": "syslog",
    "access.log": "access_log",
    "privesc.log": "syslog",
}
COLOURS = {"low": "\033[37m", "medium": "\033[33m", "high": "\033[31m", "critical": "\033[1;35m"}
RESET = "\033[0m"


def describe(record: dict, colour: bool) -> str | None:
    """Turn one audit record into a short line for a person, or None to skip it."""
    event = record.get("event", {})
    extra = record.get("irwatchd", {})
    action = event.get("action")
    source = (record.get("source") or {}).get("ip") or "-"
    if action == "finding":
        severity = extra.get("severity", "low")
        text = (
            f"finding  {severity:<8} {extra.get('category', '?'):<22} from {source:<16} "
            f"rule {record.get('rule', {}).get('id')}"
        )
        return f"{COLOURS.get(severity, '')}{text}{RESET}" if colour else text
    if action in ("block", "alert", "ticket", "forensics"):
        where = extra.get("ticket_path") or extra.get("alert_path") or extra.get("manifest_path")
        detail = extra.get("block_result") or (Path(where).name if where else "")
        return f"  -> {action:<9} {event.get('outcome'):<8} {source:<16} {detail}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--demo-dir", default=str(ROOT / "var" / "demo"), help="default: var/demo/ (emptied first)"
    )
    parser.add_argument("--rate", type=float, default=20.0, help="sample lines written per second")
    parser.add_argument(
        "--duration", type=float, default=0, help="stop after this many seconds (0: until Ctrl-C)"
    )
    args = parser.parse_args()
    demo = Path(args.demo_dir).absolute()
    state = demo / "state"
    logs = demo / "logs"
    for folder in (state, logs):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    command = [sys.executable, "-m", "irwatchd", "run", "-c", str(ROOT / "etc" / "irwatchd.yaml"),
               "--state-dir", str(state)]  # fmt: skip
    for name, kind in LOGS.items():
        command += ["--watch", f"{logs / name}:{kind}"]
    for name in LOGS:
        (logs / name).touch()  # empty files to watch from the start, so nothing is missed
    audit = state / "audit.jsonl"
    audit_start = 0
    print(f"starting: {' '.join(command)}")
    # A session of its own keeps the terminal's Ctrl-C away from the daemon: this script stops
    # it with one SIGTERM, the way systemd does.
    with (demo / "daemon.log").open("ab") as daemon_log:
        daemon = subprocess.Popen(command, cwd=ROOT, stderr=daemon_log, start_new_session=True)
    interrupted = False

    def on_interrupt(number: int, frame: object) -> None:
        nonlocal interrupted
        interrupted = True

    signal.signal(signal.SIGINT, on_interrupt)
    signal.signal(signal.SIGTERM, on_interrupt)
    colour = sys.stdout.isatty()
    time.sleep(1.5)  # let the daemon place its watches before the lines come
    pending = {name: (SAMPLES / name).read_text().splitlines(keepends=True) for name in LOGS}
    handles = {name: (logs / name).open("a") for name in LOGS}
    print(f"writing sample lines into {logs}; audit log: {audit}; Ctrl-C stops\n")
    started = time.monotonic()
    position = audit_start
    seen = {"categories": set(), "block": 0, "ticket": 0, "forensics": 0, "alert": 0}
    while not interrupted and daemon.poll() is None:
        for name, lines in pending.items():
            if lines:
                handles[name].write(lines.pop(0))
                handles[name].flush()
        if audit.exists():
            with audit.open("rb") as reader:
                reader.seek(position)
                for raw in reader:
                    if not raw.endswith(b"\n"):
                        break
                    position += len(raw)
                    record = json.loads(raw)
                    action = record.get("event", {}).get("action")
                    if action == "finding":
                        seen["categories"].add(record["irwatchd"]["category"])
                    elif action in seen and record["event"].get("outcome") == "success":
                        seen[action] += 1
                    line = describe(record, colour)
                    if line:
                        print(line, flush=True)
        if args.duration and time.monotonic() - started > args.duration:
            break
        time.sleep(1.0 / args.rate)
    for handle in handles.values():
        handle.close()
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
    code = daemon.wait(timeout=30)
    print(
        f"\nstopped (daemon exit {code}). categories: {', '.join(sorted(seen['categories']))}; "
        f"{seen['block']} blocks, {seen['ticket']} ticket updates, {seen['alert']} alerts, "
        f"{seen['forensics']} forensic copies.\nState: {state}. Try: ./run.sh irwatchd blocks list "
        f"--state-dir {state}"
    )
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
