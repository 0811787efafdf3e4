"""Channel senders and the disk queue in-process, against real sockets and servers on loopback."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from irwatchd.config import Alerts, EmailChannel, SlackChannel, SyslogChannel, WebhookChannel
from irwatchd.response.channels import (
    DeliveryError,
    EmailSender,
    SlackSender,
    SyslogSender,
    WebhookSender,
)
from irwatchd.response.delivery import AlertQueue, ChannelWorker
from irwatchd.schema import convert
from tests.helpers import wait_until
from tests.test_alerts_channels import SMTP_PASSWORD, HttpReceiver, SmtpRecorder, free_port


def _alert(alert_id: str = "a1") -> dict[str, Any]:
    incident = {"id": "inc-1", "severity": "high", "category": "sqli", "source_ip": "192.0.2.1",
                "host": None, "count": 1}  # fmt: skip
    return {"alert_id": alert_id, "reason": "new_incident", "incident": incident}


def test_syslog_unix_datagram_socket(tmp_path: Path) -> None:
    path = tmp_path / "log.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(5)
        sender = SyslogSender(SyslogChannel(name="local", address=str(path)))
        sender.send(_alert())
        message = server.recv(65535)
    # authpriv (10) * 8 + error (3) for a high-severity incident
    assert message.startswith(b"<83>1 ")
    assert b'[irwatchd@32473 alertId="a1"]' in message
    assert json.loads(message.partition(b"\xef\xbb\xbf")[2])["alert_id"] == "a1"


def test_syslog_tcp_octet_counting() -> None:
    received: list[bytes] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(5)

        def accept() -> None:
            connection, _ = server.accept()
            with connection:
                data = b""
                while chunk := connection.recv(65535):
                    data += chunk
                received.append(data)

        thread = threading.Thread(target=accept)
        thread.start()
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        SyslogSender(SyslogChannel(name="tcp", address=address)).send(_alert())
        thread.join(5)
    length, _, message = received[0].partition(b" ")
    assert int(length) == len(message)
    assert message.startswith(b"<83>1 ")


def test_unreadable_queue_file_is_set_aside(tmp_path: Path) -> None:
    receiver = HttpReceiver(free_port())
    receiver.start()
    queue = AlertQueue(tmp_path / "queue", tmp_path / "dead.jsonl")
    (tmp_path / "queue" / "00000000T000000000000Z-000000-broken.json").write_text("{not json")
    queue.put(_alert("a2"))
    channel = WebhookChannel(name="soc", url=f"http://127.0.0.1:{receiver.port}/")
    worker = ChannelWorker(WebhookSender(channel), queue, Alerts())
    worker.start()
    try:
        wait_until(lambda: receiver.requests)
        wait_until(lambda: not queue.pending())
    finally:
        worker.close(timeout=5)
        receiver.stop()
    assert [item["headers"]["X-Irwatchd-Alert-Id"] for item in receiver.requests] == ["a2"]
    assert (tmp_path / "queue" / "00000000T000000000000Z-000000-broken.bad").exists()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """Create a certificate for 127.0.0.1 with the openssl command; skip without it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed; it creates the test server's certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_email_starttls_with_login(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    recorder = SmtpRecorder()
    port = free_port()
    controller = Controller(
        recorder, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
        authenticator=recorder.authenticate, auth_require_tls=True,
    )  # fmt: skip
    controller.start()
    settings = {"type": "email", "name": "mail", "host": "127.0.0.1", "port": port,
                "sender": "irwatchd@example.org", "recipients": ["soc@example.org"],
                "username": "irwatchd", "password": SMTP_PASSWORD}  # fmt: skip
    try:
        plain = EmailSender(convert(settings, EmailChannel, "test"))
        with pytest.raises(DeliveryError, match="AUTH extension not supported"):
            plain.send(_alert("a3"))
        secure = EmailSender(
            convert(settings | {"starttls": True, "ca_file": str(cert)}, EmailChannel, "test")
        )
        secure.send(_alert("a4"))
    finally:
        controller.stop()
    assert recorder.logins == [(b"irwatchd", SMTP_PASSWORD.encode())]
    assert len(recorder.messages) == 1
    assert message_from_bytes(recorder.messages[0])["X-Irwatchd-Alert-Id"] == "a4"


def test_slack_text_escapes_markup() -> None:
    receiver = HttpReceiver(free_port())
    receiver.start()
    alert = _alert("a5")
    alert["incident"]["host"] = "<!channel>&<https://example.org|x>"
    channel = SlackChannel(name="chat", url=f"http://127.0.0.1:{receiver.port}/")
    try:
        SlackSender(channel).send(alert)
    finally:
        receiver.stop()
    text = json.loads(receiver.requests[0]["body"])["text"]
    assert "&lt;!channel&gt;&amp;&lt;https://example.org|x&gt;" in text
    assert "<" not in text


def test_webhook_redirect_is_not_delivery() -> None:
    receiver = HttpReceiver(free_port(), status=302)
    receiver.start()
    channel = WebhookChannel(name="soc", url=f"http://127.0.0.1:{receiver.port}/")
    try:
        with pytest.raises(DeliveryError, match="HTTP 302"):
            WebhookSender(channel).send(_alert("a6"))
    finally:
        receiver.stop()
    assert len(receiver.requests) == 1


def test_delivery_error_hides_url_credentials() -> None:
    port = free_port()
    url = f"http://user:pa55word@127.0.0.1:{port}/services/T000/B000/token123"
    channel = SlackChannel(name="chat", url=url, timeout_seconds=2)
    with pytest.raises(DeliveryError) as caught:
        SlackSender(channel).send(_alert("a7"))
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "pa55word" not in message
    assert "token123" not in message
