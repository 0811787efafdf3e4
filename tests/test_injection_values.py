"""Hostile user names from log lines run nothing and arrive verbatim in every output.

Each line carries a user name built to run `touch MARKER` if any step passed it to a shell,
to `mail`/`mailx` (the `~!` escape after a newline), or formatted it into a command line.
The block back-end is `command` with a real program that records its argument list.
"""

from __future__ import annotations

import json
import sys
from email import message_from_bytes
from pathlib import Path

from aiosmtpd.controller import Controller

from tests.helpers import ROOT, append_lines, audit_actions, running_daemon, wait_until
from tests.test_alerts_channels import HttpReceiver, SmtpRecorder, free_port

RECORDER = """\
import json, sys
with open(sys.argv[1], "a") as handle:
    handle.write(json.dumps(sys.argv[2:]) + "\\n")
"""


def _hostile_users(markers: Path) -> list[str]:
    return [
        f"$(touch {markers}/m1)",
        f"`touch {markers}/m2`",
        f"x;touch {markers}/m3;#",
        f"a|touch {markers}/m4&&touch {markers}/m5",
        f"x#012~! touch {markers}/m6",
        f"y\\n~!touch {markers}/m7",
        f"'\"; touch {markers}/m8; echo \"'",
        "{address} {seconds} %s %(x)s \\x00",
    ]


def test_hostile_user_names_stay_data(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    recorder_script = tmp_path / "record_argv.py"
    recorder_script.write_text(RECORDER)
    argv_log = tmp_path / "argv.jsonl"
    receiver = HttpReceiver(free_port())
    receiver.start()
    mail = SmtpRecorder()
    smtp_port = free_port()
    controller = Controller(mail, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    config = tmp_path / "irwatchd.yaml"
    block_command = [
        sys.executable,
        str(recorder_script),
        str(argv_log),
        "{address}",
        "{seconds}",
        "--end",
    ]
    config.write_text(
        f"""
rules:
  files: ["{ROOT}/etc/rules.d/*.yaml"]
correlation: []
policy:
  low: [audit, alert, ticket, block]
blocking:
  backend: command
  duration_seconds: 60
  command: {json.dumps(block_command)}
alerts:
  channels:
    - {{type: webhook, name: soc, url: "http://127.0.0.1:{receiver.port}/hook"}}
    - {{type: email, name: mail, host: 127.0.0.1, port: {smtp_port}, sender: irwatchd@example.org,
        recipients: [soc@example.org]}}
"""
    )
    users = _hostile_users(markers)
    addresses = [f"198.51.100.{number + 10}" for number in range(len(users))]
    lines = [
        f"Dec 10 06:55:48 host sshd[24200]: Invalid user {user} from {address} port 22"
        for user, address in zip(users, addresses, strict=True)
    ]
    state, log = tmp_path / "state", tmp_path / "auth.log"
    try:
        with running_daemon(state, [f"{log}:syslog"], config=config):
            append_lines(log, lines)
            wait_until(
                lambda: len(receiver.requests) == len(users) and len(mail.messages) == len(users)
            )
            wait_until(
                lambda: argv_log.exists() and len(argv_log.read_text().splitlines()) == len(users)
            )
    finally:
        controller.stop()
        receiver.stop()

    assert list(markers.iterdir()) == [], "no command ran"

    findings = audit_actions(state, "finding")
    assert [record["user"]["name"] for record in findings] == users
    assert [record["event"]["original"] for record in findings] == lines

    webhook_users = {json.loads(item["body"])["user"] for item in receiver.requests}
    assert webhook_users == set(users)
    mail_users = {
        json.loads(message_from_bytes(raw).get_payload(decode=True))["user"]
        for raw in mail.messages
    }
    assert mail_users == set(users)

    tickets = [
        json.loads(path.read_text()) for path in (state / "alerts" / "tickets").glob("inc-*.json")
    ]
    assert sorted(user for ticket in tickets for user in ticket["users"]) == sorted(users)
    observed = {item["data"] for ticket in tickets for item in ticket["thehive"]["observables"]}
    assert set(users) <= observed

    recorded = [json.loads(line) for line in argv_log.read_text().splitlines()]
    assert sorted(recorded) == sorted([address, "60", "--end"] for address in addresses)
