"""The daemon's configuration: the YAML schema, defaults, and loading with located errors.

YAML keys are the attribute names of the models below, so `policy.high` in the file is
`config.policy.high` in code. Relative paths are resolved against the config file's folder.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from irwatchd.config_paths import INSTALLED_CONFIG, INSTALLED_STATE_DIR
from irwatchd.detection.rules import Category, Severity, validation_problems
from irwatchd.errors import ConfigError, Problem
from irwatchd.yamlload import load_yaml

SourceTypeSetting = Literal["syslog", "access_log", "error_log", "json", "auto"]
Action = Literal["audit", "alert", "ticket", "block", "forensics"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Model):
    """A directory, file or glob to watch, and how to parse its lines."""

    path: str = Field(min_length=1)
    type: SourceTypeSetting = "auto"


class Sources(_Model):
    """The three watched groups; the group name is recorded with each finding."""

    system: list[SourceSpec] = Field(default_factory=list)
    security: list[SourceSpec] = Field(default_factory=list)
    application: list[SourceSpec] = Field(default_factory=list)

    @field_validator("system", "security", "application", mode="before")
    @classmethod
    def _accept_plain_paths(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"path": item} if isinstance(item, str) else item for item in value]
        return value

    def all(self) -> list[tuple[str, SourceSpec]]:
        """Return every source with its group name."""
        return (
            [("system", spec) for spec in self.system]
            + [("security", spec) for spec in self.security]
            + [("application", spec) for spec in self.application]
        )


class RulesSettings(_Model):
    """Rule files to load and rule ids to switch off."""

    files: list[str] = Field(default_factory=lambda: ["rules.d/*.yaml"])
    disabled: list[str] = Field(default_factory=list)


class CorrelationSpec(_Model):
    """A threshold over a sliding window: `threshold` findings of `categories` from one source."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    categories: list[Category] = Field(min_length=1)
    threshold: int = Field(ge=1)
    window_seconds: float = Field(gt=0)
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


class Policy(_Model):
    """The actions each severity calls for; every finding and action is audited regardless."""

    low: list[Action] = Field(default_factory=lambda: _actions("audit"))
    medium: list[Action] = Field(default_factory=lambda: _actions("audit", "alert"))
    high: list[Action] = Field(
        default_factory=lambda: _actions("audit", "alert", "ticket", "block")
    )
    critical: list[Action] = Field(
        default_factory=lambda: _actions("audit", "alert", "ticket", "block", "forensics")
    )

    def actions_for(self, severity: str) -> list[str]:
        """Return the configured actions for one severity."""
        return list(getattr(self, severity))


MAX_BLOCK_SECONDS = 10 * 365 * 86400
"""Maximum block or offence memory (10 years); longer ones overflow date conversions."""


class Blocking(_Model):
    """Block settings: the back-end, block duration, and the rate cap on new blocks."""

    backend: Literal["simulate", "nftables", "command"] = "simulate"
    duration_seconds: float = Field(default=3600, ge=1, le=MAX_BLOCK_SECONDS, allow_inf_nan=False)
    allowlist: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    max_blocks_per_minute: int = Field(default=60, ge=1)
    increment_factor: float = Field(default=2.0, ge=1, le=1000, allow_inf_nan=False)
    max_duration_seconds: float = Field(
        default=7 * 86400, ge=1, le=MAX_BLOCK_SECONDS, allow_inf_nan=False
    )
    offence_memory_seconds: float = Field(
        default=7 * 86400, gt=0, le=MAX_BLOCK_SECONDS, allow_inf_nan=False
    )
    nft_path: str = "/usr/sbin/nft"
    nft_table: str = Field(default="irwatchd", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
    nft_priority: int = -10
    command: list[str] = Field(default_factory=list)
    unblock_command: list[str] = Field(default_factory=list)
    timeout_seconds: float = Field(default=10, gt=0, le=3600, allow_inf_nan=False)
    retry_seconds: float = Field(default=30, gt=0, le=86400, allow_inf_nan=False)

    @field_validator("allowlist")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an IP address or CIDR range, such as 192.0.2.7 or "
                    "2001:db8::/32"
                ) from None
        return value

    @field_validator("nft_path")
    @classmethod
    def _absolute_program(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must be an absolute path, such as /usr/sbin/nft")
        return value

    @field_validator("command", "unblock_command")
    @classmethod
    def _absolute_command(cls, value: list[str]) -> list[str]:
        if value and not value[0].startswith("/"):
            raise ValueError(
                f"the program {value[0]!r} must be an absolute path, such as "
                "[/usr/local/bin/ban, '{address}', '{seconds}']"
            )
        return value

    @model_validator(mode="after")
    def _command_given(self) -> Blocking:
        if self.backend == "command" and not self.command:
            raise ValueError(
                "backend: command needs `command`, an argument list such as "
                "[/usr/local/bin/ban, '{address}', '{seconds}']"
            )
        return self


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"{value!r} must start with http:// or https://")
    return value


class _Channel(_Model):
    name: str = Field(default="", pattern=r"^[a-z0-9._-]{0,64}$")


class WebhookChannel(_Channel):
    """A generic webhook: the alert as a JSON POST, optionally HMAC-SHA256 signed."""

    type: Literal["webhook"]
    url: str
    secret: SecretStr | None = None
    secret_env: str | None = None
    timeout_seconds: float = Field(default=5, gt=0)

    @field_validator("url")
    @classmethod
    def _http_only(cls, value: str) -> str:
        return _http_url(value)


class SlackChannel(_Channel):
    """A Slack-compatible incoming webhook: a JSON POST of `{"text": ...}`."""

    type: Literal["slack"]
    url: str
    timeout_seconds: float = Field(default=5, gt=0)

    @field_validator("url")
    @classmethod
    def _http_only(cls, value: str) -> str:
        return _http_url(value)


class SyslogChannel(_Channel):
    """RFC 5424 messages to a local socket path, or to `udp://HOST:PORT` / `tcp://HOST:PORT`."""

    type: Literal["syslog"]
    address: str = "/dev/log"
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
    timeout_seconds: float = Field(default=5, gt=0)


class EmailChannel(_Channel):
    """E-mail over SMTP, with STARTTLS and log-in when configured."""

    type: Literal["email"]
    host: str = "localhost"
    port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    ca_file: str | None = None
    """CA bundle that verifies the server's certificate (default: the system's)."""
    username: str | None = None
    password: SecretStr | None = None
    password_env: str | None = None
    sender: str = Field(min_length=3)
    recipients: list[str] = Field(min_length=1)
    timeout_seconds: float = Field(default=10, gt=0)

    @field_validator("ca_file")
    @classmethod
    def _absolute_ca_file(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"{value!r} must be an absolute path, such as /etc/ssl/certs/ca.pem")
        return value


Channel = Annotated[
    WebhookChannel | SlackChannel | SyslogChannel | EmailChannel, Field(discriminator="type")
]


class Alerts(_Model):
    """Alert channels besides the alert files in the state directory, and alert frequency."""

    channels: list[Channel] = Field(default_factory=list)
    webhook_url: str | None = None
    webhook_timeout_seconds: float = Field(default=5, gt=0)
    max_attempts: int = Field(default=10, ge=1)
    retry_base_seconds: float = Field(default=1, gt=0)
    retry_max_seconds: float = Field(default=300, gt=0)
    reminder_minutes: float = Field(default=60, gt=0)

    @field_validator("webhook_url")
    @classmethod
    def _http_only(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)

    def all_channels(self) -> list[WebhookChannel | SlackChannel | SyslogChannel | EmailChannel]:
        """Return the channels with `webhook_url` as one more webhook and every name filled in."""
        channels = list(self.channels)
        if self.webhook_url is not None:
            channels.append(
                WebhookChannel(type="webhook", name="webhook", url=self.webhook_url,
                               timeout_seconds=self.webhook_timeout_seconds)
            )  # fmt: skip
        named = []
        for index, channel in enumerate(channels):
            if not channel.name:
                channel = channel.model_copy(update={"name": f"{channel.type}-{index + 1}"})
            named.append(channel)
        return named

    @model_validator(mode="after")
    def _unique_names(self) -> Alerts:
        names = [channel.name for channel in self.all_channels()]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"channel names must be unique; repeated: {', '.join(duplicates)}")
        return self


class Tickets(_Model):
    """Ticket settings."""

    max_evidence_lines: int = Field(default=50, ge=1)


class Forensics(_Model):
    """Scope of a forensic copy of each source file: the evidence's byte range or the whole file."""

    scope: Literal["segment", "file"] = "segment"
    context_bytes: int = Field(default=4096, ge=0)
    max_copy_bytes: int = Field(default=256 << 20, ge=1)


class AuditSettings(_Model):
    """Audit log rotation: past `max_bytes` the log moves to `audit.jsonl.1` and so on."""

    max_bytes: int = Field(default=64 << 20, ge=4096)
    keep_files: int = Field(default=10, ge=1)


class Metrics(_Model):
    """The Prometheus endpoint: off unless enabled, and bound to `listen` (loopback by default)."""

    enabled: bool = False
    listen: str = "127.0.0.1:9117"

    @field_validator("listen")
    @classmethod
    def _address_and_port(cls, value: str) -> str:
        host, separator, port = value.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            host = ""
        if not separator or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(
                f"{value!r} must be an IP address and a port, such as 127.0.0.1:9117 or [::1]:9117"
            )
        return value


class Config(_Model):
    """The whole configuration file."""

    state_dir: str = "../var"
    start_at: Literal["end", "beginning"] = "end"
    max_line_bytes: int = Field(default=65536, ge=256)
    poll_interval_seconds: float = Field(default=2.0, gt=0)
    sources: Sources = Field(default_factory=Sources)
    rules: RulesSettings = Field(default_factory=RulesSettings)
    correlation: list[CorrelationSpec] = Field(default_factory=_default_correlation)
    policy: Policy = Field(default_factory=Policy)
    blocking: Blocking = Field(default_factory=Blocking)
    alerts: Alerts = Field(default_factory=Alerts)
    tickets: Tickets = Field(default_factory=Tickets)
    forensics: Forensics = Field(default_factory=Forensics)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    metrics: Metrics = Field(default_factory=Metrics)


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
        so the default `../var` only applies to a checkout.
        """
        if (
            "state_dir" not in self.config.model_fields_set
            and self.path is not None
            and self.path.parent == INSTALLED_CONFIG.parent
        ):
            return INSTALLED_STATE_DIR
        return self.resolve(self.config.state_dir)


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
    try:
        config = Config.model_validate(document)
    except ValidationError as error:
        raise ConfigError(validation_problems(path, document, error)) from None
    return LoadedConfig(config, path.resolve())
