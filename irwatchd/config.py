"""The daemon's configuration: the YAML schema, defaults, and loading with located errors.

YAML keys are the attribute names of the structs below, so `policy.high` in the file is
`config.policy.high` in code. Relative paths are resolved against the config file's folder.
The structs are msgspec's. Importing this module takes RSS from 10.5 to 16.3 MiB. With the
pydantic models it replaced, it took it to 31.4 MiB (VmRSS after import, Python 3.11.7).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from msgspec import Meta, Struct, field
from msgspec.structs import force_setattr, replace

from irwatchd.config_paths import INSTALLED_CONFIG, INSTALLED_STATE_DIR
from irwatchd.detection.rules import Category, Severity
from irwatchd.errors import ConfigError, Problem
from irwatchd.schema import convert
from irwatchd.secret import Secret
from irwatchd.yamlload import load_yaml

CHECKOUT_STATE_DIR = "../var"
"""The state directory of a config outside /etc/irwatchd, relative to the config's folder."""
SourceTypeSetting = Literal["syslog", "access_log", "error_log", "json", "auto"]
Action = Literal["audit", "alert", "ticket", "block", "forensics"]

NonEmpty = Annotated[str, Meta(min_length=1)]
Timeout = Annotated[float, Meta(gt=0, le=3600)]
"""Seconds to wait for a program or a receiver; an hour at most."""
Count = Annotated[int, Meta(ge=1, le=1_000_000_000)]
"""A positive count, bounded so that no setting overflows a conversion later."""
Name = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]


class _Model(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A config section: unknown keys are errors, and values never change once loaded."""


class SourceSpec(_Model, frozen=True):
    """A directory, file or glob to watch, and how to parse its lines."""

    path: NonEmpty
    type: SourceTypeSetting = "auto"


class Sources(_Model, frozen=True):
    """The three watched groups; the group name is recorded with each finding.

    A plain string in a group is read as `{path: STRING}`.
    """

    system: list[SourceSpec | NonEmpty] = field(default_factory=list)
    security: list[SourceSpec | NonEmpty] = field(default_factory=list)
    application: list[SourceSpec | NonEmpty] = field(default_factory=list)

    def __post_init__(self) -> None:
        for group in ("system", "security", "application"):
            specs = [
                SourceSpec(path=item) if isinstance(item, str) else item
                for item in getattr(self, group)
            ]
            force_setattr(self, group, specs)

    def all(self) -> list[tuple[str, SourceSpec]]:
        """Return every source with its group name."""
        return [
            (group, spec)
            for group in ("system", "security", "application")
            for spec in getattr(self, group)
        ]


class RulesSettings(_Model, frozen=True):
    """Rule files to load and rule ids to switch off."""

    files: list[NonEmpty] = field(default_factory=lambda: ["rules.d/*.yaml"])
    disabled: list[str] = field(default_factory=list)


class CorrelationSpec(_Model, frozen=True):
    """A threshold over a sliding window: `threshold` findings of `categories` from one source."""

    name: Name
    categories: Annotated[list[Category], Meta(min_length=1)]
    threshold: Count
    window_seconds: Annotated[float, Meta(gt=0, le=365 * 86400)]
    category: Category
    severity: Severity


def _default_correlation() -> list[CorrelationSpec]:
    return [
        CorrelationSpec(
            name="brute-force",
            categories=["failed_login"],
            threshold=5,
            window_seconds=600,
            category="brute_force",
            severity="high",
        )
    ]


def _actions(*names: Action) -> list[Action]:
    return list(names)


class Policy(_Model, frozen=True):
    """The actions each severity calls for; every finding and action is audited regardless."""

    low: list[Action] = field(default_factory=lambda: _actions("audit"))
    medium: list[Action] = field(default_factory=lambda: _actions("audit", "alert"))
    high: list[Action] = field(
        default_factory=lambda: _actions("audit", "alert", "ticket", "block")
    )
    critical: list[Action] = field(
        default_factory=lambda: _actions("audit", "alert", "ticket", "block", "forensics")
    )

    def actions_for(self, severity: str) -> list[str]:
        """Return the configured actions for one severity."""
        return list(getattr(self, severity))


MAX_BLOCK_SECONDS = 10 * 365 * 86400
"""Maximum block or offence memory (10 years); longer ones overflow date conversions."""

BlockSeconds = Annotated[float, Meta(ge=1, le=MAX_BLOCK_SECONDS)]
"""A duration in seconds; NaN fails the bounds, so it is refused too."""


class Blocking(_Model, frozen=True):
    """Block settings: the back-end, block duration, and the rate cap on new blocks."""

    backend: Literal["simulate", "nftables", "command"] = "simulate"
    duration_seconds: BlockSeconds = 3600
    allowlist: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    max_blocks_per_minute: Count = 60
    increment_factor: Annotated[float, Meta(ge=1, le=1000)] = 2.0
    max_duration_seconds: BlockSeconds = 7 * 86400
    offence_memory_seconds: Annotated[float, Meta(gt=0, le=MAX_BLOCK_SECONDS)] = 7 * 86400
    nft_path: str = "/usr/sbin/nft"
    nft_table: Annotated[str, Meta(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$")] = "irwatchd"
    nft_priority: Annotated[int, Meta(ge=-(2**31), le=2**31 - 1)] = -10
    command: list[str] = field(default_factory=list)
    unblock_command: list[str] = field(default_factory=list)
    timeout_seconds: Annotated[float, Meta(gt=0, le=3600)] = 10
    retry_seconds: Annotated[float, Meta(gt=0, le=86400)] = 30

    def __post_init__(self) -> None:
        for item in self.allowlist:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"allowlist: {item!r} is not an IP address or CIDR range, such as "
                    "192.0.2.7 or 2001:db8::/32"
                ) from None
        if not self.nft_path.startswith("/"):
            raise ValueError(
                f"nft_path: {self.nft_path!r} must be an absolute path, such as /usr/sbin/nft"
            )
        for name in ("command", "unblock_command"):
            program = getattr(self, name)[:1]
            if program and not program[0].startswith("/"):
                raise ValueError(
                    f"{name}: the program {program[0]!r} must be an absolute path, such as "
                    "[/usr/local/bin/ban, '{address}', '{seconds}']"
                )
        if self.max_duration_seconds < self.duration_seconds:
            raise ValueError(
                f"max_duration_seconds: {self.max_duration_seconds:g} is below duration_seconds "
                f"({self.duration_seconds:g}); raise it, or lower duration_seconds"
            )
        if self.backend == "command" and not self.command:
            raise ValueError(
                "backend: command needs `command`, an argument list such as "
                "[/usr/local/bin/ban, '{address}', '{seconds}']"
            )


def _check_http_url(key: str, value: str | None) -> None:
    if value is None:
        return
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{key}: {value!r} must be an http:// or https:// URL with a host, such as "
            "https://hooks.example.org/irwatchd"
        )


class _Channel(_Model, tag_field="type", frozen=True):
    name: Annotated[str, Meta(pattern=r"^[a-z0-9._-]{0,64}$")] = ""

    @property
    def type(self) -> str:
        """The channel type, as written in the file's `type` key."""
        return str(type(self).__struct_config__.tag)


class WebhookChannel(_Channel, tag="webhook", kw_only=True, frozen=True):
    """A generic webhook: the alert as a JSON POST, optionally HMAC-SHA256 signed."""

    url: str
    secret: Secret | None = None
    secret_env: str | None = None
    timeout_seconds: Timeout = 5

    def __post_init__(self) -> None:
        _check_http_url("url", self.url)


class SlackChannel(_Channel, tag="slack", kw_only=True, frozen=True):
    """A Slack-compatible incoming webhook: a JSON POST of `{"text": ...}`."""

    url: str
    timeout_seconds: Timeout = 5

    def __post_init__(self) -> None:
        _check_http_url("url", self.url)


class SyslogChannel(_Channel, tag="syslog", kw_only=True, frozen=True):
    """RFC 5424 messages to a local socket path, or to `udp://HOST:PORT` / `tcp://HOST:PORT`."""

    address: NonEmpty = "/dev/log"
    facility: Literal[
        "auth",
        "authpriv",
        "daemon",
        "local0",
        "local1",
        "local2",
        "local3",
        "local4",
        "local5",
        "local6",
        "local7",
        "security",
        "user",
    ] = "authpriv"
    timeout_seconds: Timeout = 5


class EmailChannel(_Channel, tag="email", kw_only=True, frozen=True):
    """E-mail over SMTP, with STARTTLS and log-in when configured."""

    sender: Annotated[str, Meta(min_length=3)]
    recipients: Annotated[list[NonEmpty], Meta(min_length=1)]
    host: NonEmpty = "localhost"
    port: Annotated[int, Meta(ge=1, le=65535)] = 25
    starttls: bool = False
    ca_file: str | None = None
    """CA bundle that verifies the server's certificate (default: the system's)."""
    username: str | None = None
    password: Secret | None = None
    password_env: str | None = None
    timeout_seconds: Timeout = 10

    def __post_init__(self) -> None:
        if self.ca_file is not None and not self.ca_file.startswith("/"):
            raise ValueError(
                f"ca_file: {self.ca_file!r} must be an absolute path, such as /etc/ssl/certs/ca.pem"
            )


Channel = WebhookChannel | SlackChannel | SyslogChannel | EmailChannel


class Alerts(_Model, frozen=True):
    """Alert channels besides the alert files in the state directory, and alert frequency."""

    channels: list[Channel] = field(default_factory=list)
    webhook_url: str | None = None
    webhook_timeout_seconds: Timeout = 5
    max_attempts: Count = 10
    retry_base_seconds: Annotated[float, Meta(gt=0, le=86400)] = 1
    retry_max_seconds: Annotated[float, Meta(gt=0, le=7 * 86400)] = 300
    reminder_minutes: Annotated[float, Meta(gt=0, le=365 * 24 * 60)] = 60

    def __post_init__(self) -> None:
        _check_http_url("webhook_url", self.webhook_url)
        names = [channel.name for channel in self.all_channels()]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"channel names must be unique; repeated: {', '.join(duplicates)}")

    def all_channels(self) -> list[Channel]:
        """Return the channels with `webhook_url` as one more webhook and every name filled in."""
        channels: list[Channel] = list(self.channels)
        if self.webhook_url is not None:
            channels.append(
                WebhookChannel(name="webhook", url=self.webhook_url,
                               timeout_seconds=self.webhook_timeout_seconds)
            )  # fmt: skip
        named = []
        for index, channel in enumerate(channels):
            if not channel.name:
                channel = replace(channel, name=f"{channel.type}-{index + 1}")
            named.append(channel)
        return named


class Tickets(_Model, frozen=True):
    """Ticket settings."""

    max_evidence_lines: Annotated[int, Meta(ge=1, le=100_000)] = 50


class Forensics(_Model, frozen=True):
    """Scope of a forensic copy of each source file: the evidence's byte range or the whole file."""

    scope: Literal["segment", "file"] = "segment"
    context_bytes: Annotated[int, Meta(ge=0, le=1 << 30)] = 4096
    max_copy_bytes: Annotated[int, Meta(ge=1, le=1 << 50)] = 256 << 20


class AuditSettings(_Model, frozen=True):
    """Audit log rotation: past `max_bytes` the log moves to `audit.jsonl.1` and so on."""

    max_bytes: Annotated[int, Meta(ge=4096, le=1 << 50)] = 64 << 20
    keep_files: Annotated[int, Meta(ge=1, le=100_000)] = 10


class Metrics(_Model, frozen=True):
    """The Prometheus endpoint: off unless enabled, and bound to `listen` (loopback by default)."""

    enabled: bool = False
    listen: str = "127.0.0.1:9117"

    def __post_init__(self) -> None:
        host, separator, port = self.listen.rpartition(":")
        bracketed = host.startswith("[") and host.endswith("]")
        host = host.removeprefix("[").removesuffix("]")
        try:
            # An IPv6 address needs its brackets, and an IPv4 address has none.
            valid_host = (ipaddress.ip_address(host).version == 6) == bracketed
        except ValueError:
            valid_host = False
        valid_port = port.isascii() and port.isdigit() and 1 <= int(port) <= 65535
        if not separator or not valid_host or not valid_port:
            raise ValueError(
                f"listen: {self.listen!r} must be an IP address and a port, such as "
                "127.0.0.1:9117 or [::1]:9117"
            )


class Config(_Model, frozen=True):
    """The whole configuration file."""

    state_dir: NonEmpty | None = None
    """The folder of the audit log, tickets and blocks (default: see `LoadedConfig.state_dir`)."""
    start_at: Literal["end", "beginning"] = "end"
    max_line_bytes: Annotated[int, Meta(ge=256, le=1 << 30)] = 65536
    poll_interval_seconds: Annotated[float, Meta(gt=0, le=3600)] = 2.0
    sources: Sources = field(default_factory=Sources)
    rules: RulesSettings = field(default_factory=RulesSettings)
    correlation: list[CorrelationSpec] = field(default_factory=_default_correlation)
    policy: Policy = field(default_factory=Policy)
    blocking: Blocking = field(default_factory=Blocking)
    alerts: Alerts = field(default_factory=Alerts)
    tickets: Tickets = field(default_factory=Tickets)
    forensics: Forensics = field(default_factory=Forensics)
    audit: AuditSettings = field(default_factory=AuditSettings)
    metrics: Metrics = field(default_factory=Metrics)

    def __post_init__(self) -> None:
        names = [spec.name for spec in self.correlation]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(
                f"correlation: each name must be unique; repeated: {', '.join(repeated)}"
            )


def validate_config(document: Any, path: Path | str = "<config>") -> Config:
    """Validate a config document (a mapping, as read from YAML); raise `ConfigError`."""
    return convert(document, Config, path)


class LoadedConfig:
    """A validated config and the file it came from, with paths resolved against that file."""

    def __init__(self, config: Config, path: Path | None) -> None:
        self.config = config
        self.path = path
        self.base = path.parent if path is not None else Path.cwd()

    def resolve(self, value: str) -> Path:
        """Resolve a path from the config against the config file's folder."""
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else (self.base / candidate).resolve()

    @property
    def state_dir(self) -> Path:
        """The resolved state directory.

        A config in `/etc/irwatchd/` that does not set `state_dir` gets `/var/lib/irwatchd`,
        and any other gets `../var` next to it, which is a checkout's `var/`.
        """
        if self.config.state_dir is not None:
            return self.resolve(self.config.state_dir)
        if self.path is not None and self.path.parent == INSTALLED_CONFIG.parent:
            return INSTALLED_STATE_DIR
        return self.resolve(CHECKOUT_STATE_DIR)


def load_config(path: Path | None) -> LoadedConfig:
    """Load and validate a config file; None gives the built-in defaults."""
    if path is None:
        return LoadedConfig(Config(), None)
    document = load_yaml(path)
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(
            [Problem(str(path), 1, "", "the top level must be a mapping of settings")]
        )
    return LoadedConfig(validate_config(document, path), path.resolve())
