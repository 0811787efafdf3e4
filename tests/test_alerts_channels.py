"""Alert channels against real receivers on 127.0.0.1: HTTP, SMTP (aiosmtpd) and syslog (UDP).

The daemon runs as a subprocess. Receivers record what arrives, so the tests check the
fields, the signature, the queue across an outage and a restart, and that no alert id
arrives twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.helpers import ROOT, append_lines, audit_actions, run_cli, running_daemon, wait_until

SECRET = "hmac-secret-7f3a9c"
PASSWORD_ENV = "IRWATCHD_TEST_SMTP_PASSWORD"
SMTP_PASSWORD = "smtp-password-4c1d"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class HttpReceiver:
    """A real HTTP server on a fixed port that records every POST; it can start late or fail."""

    def __init__(self, port: int, status: int = 200) -> None:
        self.port = port
        self.status = status
        self.requests: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(item["body"]) for item in self.requests if item["path"] == path]


class SmtpRecorder:
    """aiosmtpd handler that keeps every accepted message and every log-in."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.logins: list[tuple[bytes, bytes]] = []

    def authenticate(
        self, server: object, session: object, envelope: object, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == SMTP_PASSWORD.encode())

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        self.messages.append(envelope.original_content or envelope.content)
        return "250 OK"


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(free_port())
    yield receiver
    receiver.stop()


def _config(tmp_path: Path, channels: str, extra: str = "") -> Path:
    path = tmp_path / "irwatchd.yaml"
    path.write_text(
        f"""
rules:
  files: ["{ROOT}/etc/rules.d/*.yaml"]
policy:
  low: [audit, alert, ticket]
alerts:
  retry_base_seconds: 0.2
  retry_max_seconds: 0.5
  max_attempts: 1000
{extra}
  channels:
{channels}
"""
    )
    return path


def _failed(address: str, user: str = "root") -> str:
    return (
        f"Dec 10 06:55:48 host sshd[24200]: Failed password for {user} from {address} port 22 ssh2"
    )


def _alert_ids(state: Path) -> list[str]:
    return [record["irwatchd"]["alert_id"] for record in audit_actions(state, "alert")]


def _queued(state: Path) -> list[Path]:
    return sorted((state / "alerts" / "queue").glob("*/*.json"))


def test_alerts_reach_webhook_slack_email(tmp_path: Path, http_receiver: HttpReceiver) -> None:
    http_receiver.start()
    recorder = SmtpRecorder()
    smtp_port = free_port()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=smtp_port,
        authenticator=recorder.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    base = f"http://127.0.0.1:{http_receiver.port}"
    config = _config(
        tmp_path,
        f"""
    - {{type: webhook, name: soc, url: "{base}/hook", secret_env: IRWATCHD_TEST_HMAC}}
    - {{type: slack, name: chat, url: "{base}/slack"}}
    - {{type: email, name: mail, host: 127.0.0.1, port: {smtp_port}, sender: irwatchd@example.org,
        recipients: [soc@example.org], username: irwatchd, password_env: {PASSWORD_ENV}}}
""",
    )
    state, log = tmp_path / "state", tmp_path / "auth.log"
    env = {"IRWATCHD_TEST_HMAC": SECRET, PASSWORD_ENV: SMTP_PASSWORD}
    try:
        with running_daemon(state, [f"{log}:syslog"], config=config, env=env) as daemon:
            append_lines(log, [_failed("203.0.113.40"), _failed("203.0.113.40")])
            wait_until(
                lambda: (
                    len(http_receiver.bodies("/hook")) == 1
                    and recorder.messages
                    and http_receiver.bodies("/slack")
                )
            )
            wait_until(lambda: len(audit_actions(state, "finding")) == 2)
            wait_until(lambda: not _queued(state))
            stderr = daemon.log_text()
    finally:
        controller.stop()

    alert_ids = _alert_ids(state)
    assert len(alert_ids) == 1, "two findings of one incident make one alert"
    hook = http_receiver.requests[[r["path"] for r in http_receiver.requests].index("/hook")]
    body = json.loads(hook["body"])
    assert body["alert_id"] == alert_ids[0]
    assert body["reason"] == "new_incident"
    assert body["incident"]["source_ip"] == "203.0.113.40"
    assert body["incident"]["category"] == "failed_login"
    assert hook["headers"]["X-Irwatchd-Alert-Id"] == alert_ids[0]
    expected = hmac.new(SECRET.encode(), hook["body"], hashlib.sha256).hexdigest()
    assert hook["headers"]["X-Irwatchd-Signature"] == f"sha256={expected}"

    slack = http_receiver.bodies("/slack")[0]
    assert set(slack) == {"text"}
    assert "203.0.113.40" in slack["text"]

    assert recorder.logins == [(b"irwatchd", SMTP_PASSWORD.encode())]
    message = message_from_bytes(recorder.messages[0])
    assert message["X-Irwatchd-Alert-Id"] == alert_ids[0]
    assert "203.0.113.40" in message["Subject"]
    assert json.loads(message.get_payload(decode=True))["alert_id"] == alert_ids[0]

    for path in state.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert SECRET.encode() not in content, f"HMAC secret leaked into {path}"
            assert SMTP_PASSWORD.encode() not in content, f"SMTP password leaked into {path}"
    assert SECRET not in stderr
    assert SMTP_PASSWORD not in stderr


def test_outage_queues_and_delivers_once(tmp_path: Path, http_receiver: HttpReceiver) -> None:
    recorder = SmtpRecorder()
    smtp_port = free_port()
    config = _config(
        tmp_path,
        f"""
    - {{type: webhook, name: soc, url: "http://127.0.0.1:{http_receiver.port}/hook"}}
    - {{type: email, name: mail, host: 127.0.0.1, port: {smtp_port}, sender: irwatchd@example.org,
        recipients: [soc@example.org]}}
""",
    )
    state, log = tmp_path / "state", tmp_path / "auth.log"

    with running_daemon(state, [f"{log}:syslog"], config=config) as daemon:
        append_lines(log, [_failed("198.51.100.61")])
        wait_until(lambda: len(_queued(state)) == 2)
        wait_until(
            lambda: all(json.loads(path.read_text())["attempts"] >= 2 for path in _queued(state))
        )
        assert "alert_retry" in daemon.log_text()
        entry = json.loads(_queued(state)[0].read_text())
        assert entry["last_error"]

    assert len(_queued(state)) == 2, "queued alerts survive the stop"
    controller = Controller(recorder, hostname="127.0.0.1", port=smtp_port)
    try:
        with running_daemon(state, [f"{log}:syslog"], config=config):
            append_lines(log, [_failed("198.51.100.62")])
            wait_until(lambda: len(_alert_ids(state)) == 2)
            wait_until(lambda: len(_queued(state)) == 4)
            http_receiver.start()
            controller.start()
            wait_until(lambda: not _queued(state), timeout=20)
            append_lines(log, [_failed("198.51.100.63")])
            wait_until(lambda: len(http_receiver.requests) == 3 and len(recorder.messages) == 3)
            wait_until(lambda: not _queued(state))
    finally:
        controller.stop()

    alert_ids = _alert_ids(state)
    hook_ids = [item["headers"]["X-Irwatchd-Alert-Id"] for item in http_receiver.requests]
    mail_ids = [message_from_bytes(raw)["X-Irwatchd-Alert-Id"] for raw in recorder.messages]
    assert sorted(hook_ids) == sorted(alert_ids), "each alert reached the webhook exactly once"
    assert sorted(mail_ids) == sorted(alert_ids), "each alert reached the mail server exactly once"
    assert hook_ids[0] == alert_ids[0], "the alert queued before the restart went first"


def test_rejected_alert_goes_to_dead_letter(tmp_path: Path) -> None:
    receiver = HttpReceiver(free_port(), status=500)
    receiver.start()
    config = (
        _config(
            tmp_path,
            f"""
    - {{type: webhook, name: soc, url: "http://127.0.0.1:{receiver.port}/hook"}}
""",
        )
        .read_text()
        .replace("max_attempts: 1000", "max_attempts: 3")
    )
    (tmp_path / "irwatchd.yaml").write_text(config)
    state, log = tmp_path / "state", tmp_path / "auth.log"
    try:
        with running_daemon(state, [f"{log}:syslog"], config=tmp_path / "irwatchd.yaml"):
            append_lines(log, [_failed("192.0.2.90")])
            dead = state / "alerts" / "dead" / "soc.jsonl"
            wait_until(dead.exists)
    finally:
        receiver.stop()
    entries = [json.loads(line) for line in dead.read_text().splitlines()]
    assert len(entries) == 1
    assert entries[0]["attempts"] == 3
    assert "HTTP 500" in entries[0]["last_error"]
    assert entries[0]["alert"]["alert_id"] == _alert_ids(state)[0]
    assert len(receiver.requests) == 3
    assert not _queued(state)


def test_syslog_channel_sends_rfc5424(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(20)
        port = server.getsockname()[1]
        config = _config(
            tmp_path,
            f"""
    - {{type: syslog, name: siem, address: "udp://127.0.0.1:{port}", facility: authpriv}}
""",
        )
        state, log = tmp_path / "state", tmp_path / "auth.log"
        with running_daemon(state, [f"{log}:syslog"], config=config):
            append_lines(log, [_failed("192.0.2.91")])
            datagram, _ = server.recvfrom(65535)
    header, _, text = datagram.partition(b"\xef\xbb\xbf")
    # authpriv (10) * 8 + notice (5) for a low-severity incident
    assert header.startswith(b"<85>1 ")
    fields = header.decode().split(" ")
    assert fields[3] == "irwatchd"
    assert fields[5] == "alert"
    alert = json.loads(text)
    assert alert["alert_id"] == _alert_ids(state)[0]
    assert alert["incident"]["source_ip"] == "192.0.2.91"


def test_missing_secret_env_stops_start(tmp_path: Path) -> None:
    config = _config(tmp_path, """
    - {type: webhook, name: soc, url: "http://127.0.0.1:9/hook", secret_env: IRWATCHD_TEST_UNSET}
""")  # fmt: skip
    log = tmp_path / "auth.log"
    log.write_text("")
    result = run_cli("run", "-c", str(config), "--state-dir", str(tmp_path / "state"),
                     "--watch", f"{log}:syslog", timeout=60)  # fmt: skip
    assert result.returncode == 78
    assert "IRWATCHD_TEST_UNSET" in result.stderr


def test_reload_with_missing_secret_keeps_running(
    tmp_path: Path, http_receiver: HttpReceiver
) -> None:
    http_receiver.start()
    hook = f"http://127.0.0.1:{http_receiver.port}/hook"
    config = _config(tmp_path, f"""
    - {{type: webhook, name: soc, url: "{hook}"}}
""")  # fmt: skip
    state, log = tmp_path / "state", tmp_path / "auth.log"
    with running_daemon(state, [f"{log}:syslog"], config=config) as daemon:
        config.write_text(
            config.read_text().replace(
                f'url: "{hook}"', f'url: "{hook}", secret_env: IRWATCHD_TEST_UNSET'
            )
        )
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: "alert_channel_invalid" in daemon.log_text())
        append_lines(log, [_failed("192.0.2.95")])
        wait_until(lambda: http_receiver.requests)
        assert daemon.process.poll() is None
    assert "X-Irwatchd-Signature" not in http_receiver.requests[0]["headers"], "old settings kept"
