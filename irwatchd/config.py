"""The daemon's configuration: the YAML schema, defaults, and loading with located errors.

YAML keys are the attribute names of the models below, so `policy.high` in the file is
`config.policy.high` in code. Relative paths are resolved against the config file's folder.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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
    """Which rule files to load and which rule ids to switch off."""

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


class Policy(_Model):
    """The actions each severity calls for; every finding and action is audited regardless."""

    low: list[Action] = Field(default_factory=lambda: ["audit"])
    medium: list[Action] = Field(default_factory=lambda: ["audit", "alert"])
    high: list[Action] = Field(default_factory=lambda: ["audit", "alert", "ticket", "block"])
    critical: list[Action] = Field(
        default_factory=lambda: ["audit", "alert", "ticket", "block", "forensics"]
    )

    def actions_for(self, severity: str) -> list[str]:
        """Return the configured actions for one severity."""
        return list(getattr(self, severity))


class Blocking(_Model):
    """How blocks are applied and how long they last."""

    backend: Literal["simulate", "nftables", "command"] = "simulate"
    duration_seconds: float = Field(default=3600, gt=0)
    allowlist: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    nft_path: str = "/usr/sbin/nft"
    nft_table: str = Field(default="irwatchd", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
    command: list[str] = Field(default_factory=list)

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


class Alerts(_Model):
    """Where alerts go besides the alert files in the state directory."""

    webhook_url: str | None = None
    webhook_timeout_seconds: float = Field(default=5, gt=0)
    webhook_max_attempts: int = Field(default=5, ge=1)

    @field_validator("webhook_url")
    @classmethod
    def _http_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} must start with http:// or https://")
        return value


class Tickets(_Model):
    """Ticket settings."""

    max_evidence_lines: int = Field(default=50, ge=1)


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
        """The resolved state directory."""
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


CHECKOUT_CONFIG = Path(__file__).resolve().parent.parent / "etc" / "irwatchd.yaml"
INSTALLED_CONFIG = Path("/etc/irwatchd/irwatchd.yaml")


def default_config_path() -> Path | None:
    """Return the config to use without `-c`: the checkout's `etc/`, else `/etc/irwatchd/`."""
    for candidate in (CHECKOUT_CONFIG, INSTALLED_CONFIG):
        if candidate.is_file():
            return candidate
    return None
