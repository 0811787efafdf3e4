"""Alert channels: how one alert is sent to a webhook, Slack, syslog or an SMTP server.

A sender's `send` returns only when the receiver accepted the alert: an HTTP 2xx, a syslog
datagram or stream write, or an SMTP accept. Otherwise it raises `DeliveryError`, and the
queue in `irwatchd.response.delivery` decides about retries. Secrets come from the config or from an
environment variable and appear in no log line, status file or audit record.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import smtplib
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any, Protocol

from irwatchd.config import EmailChannel, SlackChannel, SyslogChannel, WebhookChannel
from irwatchd.errors import ConfigError, IrwatchdError, Problem
from irwatchd.parsing.timestamps import format_rfc3339
from irwatchd.secret import Secret

ALERT_ID_HEADER = "X-Irwatchd-Alert-Id"
SIGNATURE_HEADER = "X-Irwatchd-Signature"
SYSLOG_FACILITY = {
    "user": 1,
    "daemon": 3,
    "auth": 4,
    "security": 4,
    "authpriv": 10,
    **{f"local{number}": 16 + number for number in range(8)},
}
SYSLOG_SEVERITY = {"low": 5, "medium": 4, "high": 3, "critical": 2}

ChannelSettings = WebhookChannel | SlackChannel | SyslogChannel | EmailChannel


class DeliveryError(IrwatchdError):
    """A receiver that did not accept an alert; the message never contains a secret."""


class Sender(Protocol):
    """Sends one alert to one receiver."""

    name: str

    def send(self, alert: dict[str, Any]) -> None:
        """Deliver the alert or raise `DeliveryError`."""


def resolve_secret(value: Secret | None, env_name: str | None, where: str) -> str | None:
    """Return a secret from the config, else from the named environment variable."""
    if value is not None:
        return value.get_secret_value()
    if env_name is None:
        return None
    secret = os.environ.get(env_name)
    if secret is None:
        raise ConfigError(
            [
                Problem(
                    where,
                    None,
                    env_name,
                    "environment variable is not set; export it for the daemon",
                )
            ]
        )
    return secret


def summary_text(alert: dict[str, Any]) -> str:
    """Return a one-line human summary of an alert (the values stay as logged)."""
    incident = alert["incident"]
    return (
        f"[irwatchd] {incident['severity']} {incident['category']} from "
        f"{incident['source_ip'] or 'unknown source'} on {incident['host'] or 'unknown host'}: "
        f"{incident['count']} finding(s), {alert['reason']}, incident {incident['id']}"
    )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Turns every 3xx into an error: urllib would repeat a redirected POST as a bodiless GET,
    and a 2xx for that GET would count as delivered, possibly from another host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _post_json(url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked in config
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "irwatchd"} | headers,
    )
    # Only host and port go into messages: the URL's user info or path can carry a token.
    parts = urllib.parse.urlsplit(url)
    host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        raise DeliveryError(f"{host} responded with HTTP {error.code}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        reason = getattr(error, "reason", error)
        raise DeliveryError(f"{host} unreachable: {reason}") from None
    if not 200 <= status < 300:
        raise DeliveryError(f"{host} responded with HTTP {status}")


class WebhookSender:
    """POSTs the alert as JSON, signed with HMAC-SHA256 over the body when a secret is set."""

    def __init__(self, settings: WebhookChannel) -> None:
        self.name = settings.name
        self.settings = settings
        self._secret = resolve_secret(
            settings.secret, settings.secret_env, f"alerts channel {self.name}"
        )

    def send(self, alert: dict[str, Any]) -> None:
        """POST the alert with its id header and, when configured, its signature header."""
        body = json.dumps(alert, ensure_ascii=False).encode()
        headers = {ALERT_ID_HEADER: alert["alert_id"]}
        if self._secret is not None:
            digest = hmac.new(self._secret.encode(), body, hashlib.sha256).hexdigest()
            headers[SIGNATURE_HEADER] = f"sha256={digest}"
        _post_json(self.settings.url, body, headers, self.settings.timeout_seconds)


def slack_escape(text: str) -> str:
    """Escape `&`, `<` and `>` as Slack's message formatting requires.

    Unescaped, a logged host name such as `<!channel>` would notify a whole channel.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackSender:
    """POSTs `{"text": summary}` to a Slack-compatible incoming webhook."""

    def __init__(self, settings: SlackChannel) -> None:
        self.name = settings.name
        self.settings = settings

    def send(self, alert: dict[str, Any]) -> None:
        """POST the summary line, escaped so that logged values cannot become Slack markup."""
        body = json.dumps({"text": slack_escape(summary_text(alert))}, ensure_ascii=False).encode()
        headers = {ALERT_ID_HEADER: alert["alert_id"]}
        _post_json(self.settings.url, body, headers, self.settings.timeout_seconds)


def rfc5424_message(alert: dict[str, Any], facility: str) -> bytes:
    """Format an alert as one RFC 5424 message with the alert JSON as its text."""
    severity = SYSLOG_SEVERITY[alert["incident"]["severity"]]
    priority = SYSLOG_FACILITY[facility] * 8 + severity
    stamp = format_rfc3339(datetime.now(UTC))
    hostname = socket.gethostname() or "-"
    structured = f'[irwatchd@32473 alertId="{alert["alert_id"]}"]'
    text = json.dumps(alert, ensure_ascii=False, separators=(",", ":"))
    # RFC 5424 section 6.4: the BOM marks the text as UTF-8.
    header = f"<{priority}>1 {stamp} {hostname} irwatchd {os.getpid()} alert {structured} "
    return header.encode() + b"\xef\xbb\xbf" + text.encode()


class SyslogSender:
    """Sends RFC 5424 messages over a local socket, UDP, or TCP with octet-counting framing."""

    def __init__(self, settings: SyslogChannel) -> None:
        self.name = settings.name
        self.settings = settings

    def send(self, alert: dict[str, Any]) -> None:
        """Send one message; a local socket is tried as a datagram socket, then as a stream."""
        message = rfc5424_message(alert, self.settings.facility)
        address = self.settings.address
        timeout = self.settings.timeout_seconds
        try:
            if address.startswith("udp://"):
                host, port = _host_port(address[6:])
                with socket.socket(_family(host), socket.SOCK_DGRAM) as sock:
                    sock.settimeout(timeout)
                    sock.sendto(message, (host, port))
            elif address.startswith("tcp://"):
                host, port = _host_port(address[6:])
                with socket.create_connection((host, port), timeout=timeout) as sock:
                    sock.sendall(f"{len(message)} ".encode() + message)
            else:
                self._send_local(address, message, timeout)
        except OSError as error:
            raise DeliveryError(f"syslog {address} failed: {error}") from None

    @staticmethod
    def _send_local(path: str, message: bytes, timeout: float) -> None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(timeout)
                sock.connect(path)
                sock.send(message)
                return
        except OSError as error:
            if error.errno != 91:  # EPROTOTYPE: the socket is a stream socket
                raise
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(message + b"\n")


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class EmailSender:
    """Sends the alert as a plain-text e-mail through SMTP, with STARTTLS when configured."""

    def __init__(self, settings: EmailChannel) -> None:
        self.name = settings.name
        self.settings = settings
        self._password = resolve_secret(
            settings.password, settings.password_env, f"alerts channel {self.name}"
        )

    def build_message(self, alert: dict[str, Any]) -> EmailMessage:
        """Build the e-mail: summary as subject, the alert JSON as body."""
        message = EmailMessage()
        message["From"] = self.settings.sender
        message["To"] = ", ".join(self.settings.recipients)
        # The subject is one header line; a CR or LF in a logged value must not start another.
        message["Subject"] = " ".join(summary_text(alert).split())[:200]
        message["Message-ID"] = make_msgid(idstring=alert["alert_id"], domain="irwatchd")
        message[ALERT_ID_HEADER] = alert["alert_id"]
        message.set_content(json.dumps(alert, ensure_ascii=False, indent=2))
        return message

    def send(self, alert: dict[str, Any]) -> None:
        """Send the e-mail; it counts as delivered once the server accepted it."""
        settings = self.settings
        try:
            with smtplib.SMTP(
                settings.host, settings.port, timeout=settings.timeout_seconds
            ) as smtp:
                smtp.ehlo()
                if settings.starttls:
                    smtp.starttls(context=ssl.create_default_context(cafile=settings.ca_file))
                    smtp.ehlo()
                if settings.username is not None and self._password is not None:
                    smtp.login(settings.username, self._password)
                smtp.send_message(self.build_message(alert))
        except smtplib.SMTPResponseException as error:
            raise DeliveryError(
                f"SMTP {settings.host}:{settings.port} rejected the message "
                f"with code {error.smtp_code}"
            ) from None
        except (smtplib.SMTPException, OSError) as error:
            raise DeliveryError(
                f"SMTP {settings.host}:{settings.port} failed: {type(error).__name__}: {error}"
            ) from None


def build_sender(settings: ChannelSettings) -> Sender:
    """Return the sender for one configured channel."""
    if isinstance(settings, WebhookChannel):
        return WebhookSender(settings)
    if isinstance(settings, SlackChannel):
        return SlackSender(settings)
    if isinstance(settings, SyslogChannel):
        return SyslogSender(settings)
    return EmailSender(settings)
