"""Config validation: each invalid value named by file, line and key, with the values allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from irwatchd.config import EmailChannel, WebhookChannel, load_config
from irwatchd.errors import ConfigError
from irwatchd.secret import Secret


def _problems(tmp_path: Path, text: str) -> list[str]:
    config = tmp_path / "irwatchd.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    return [str(problem).removeprefix(f"{config}:") for problem in caught.value.problems]


def test_every_removable_problem_is_reported(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        "blocking:\n  backend: iptables\n  duration_seconds: -5\npolcy: 1\n"
        "metrics:\n  listen: nowhere\n",
    )
    assert problems == [
        "2: blocking.backend: Invalid enum value 'iptables'; "
        "allowed: 'command', 'nftables', 'simulate'",
        "3: blocking.duration_seconds: Expected `float` >= 1.0, got -5",
        "4: polcy: unknown key; remove it or check its spelling",
        "6: metrics.listen: 'nowhere' must be an IP address and a port, such as 127.0.0.1:9117 "
        "or [::1]:9117",
    ]


def test_required_key_with_bad_value_is_reported_once(tmp_path: Path) -> None:
    # Removing `sender` to look further would only add "missing required field `sender`".
    problems = _problems(
        tmp_path,
        "alerts:\n  channels:\n    - type: email\n      sender: a\n      recipients: [x]\n",
    )
    assert problems == ["4: alerts.channels.0.sender: Expected `str` of length >= 3, got 'a'"]


def test_channel_type_lists_the_types(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "alerts:\n  channels:\n    - type: web\n      url: http://x\n")
    assert problems == [
        "3: alerts.channels.0.type: Invalid value 'web'; "
        "allowed: 'webhook', 'slack', 'syslog', 'email'"
    ]


def test_check_across_fields_names_the_field(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path, "blocking:\n  nft_priority: 0\n  allowlist: [192.0.2.1, not-an-address]\n"
    )
    assert problems == [
        "3: blocking.allowlist: 'not-an-address' is not an IP address or CIDR range, such as "
        "192.0.2.7 or 2001:db8::/32"
    ]


def test_nan_duration_is_refused(tmp_path: Path) -> None:
    assert _problems(tmp_path, "blocking:\n  duration_seconds: .nan\n") == [
        "2: blocking.duration_seconds: Expected `float` >= 1.0, got nan"
    ]


def test_secret_hidden_from_repr(tmp_path: Path) -> None:
    config = tmp_path / "irwatchd.yaml"
    config.write_text(
        "alerts:\n  channels:\n"
        "    - {type: webhook, url: 'http://127.0.0.1:9/', secret: hunter2}\n"
        "    - {type: email, sender: irwatchd@example.org, recipients: [a@example.org],"
        " password: swordfish}\n"
    )
    webhook, email = load_config(config).config.alerts.all_channels()
    assert isinstance(webhook, WebhookChannel) and isinstance(email, EmailChannel)
    assert "hunter2" not in repr(webhook)
    assert "swordfish" not in repr(email)
    assert webhook.secret == Secret("hunter2") != Secret("hunter3")
    assert (webhook.name, email.name) == ("webhook-1", "email-2")


def test_plain_source_paths_become_specs(tmp_path: Path) -> None:
    config = tmp_path / "irwatchd.yaml"
    config.write_text(
        "sources:\n  system: [/var/log/syslog, {path: /var/log/auth.log, type: syslog}]\n"
    )
    specs = load_config(config).config.sources.all()
    assert [(group, spec.path, spec.type) for group, spec in specs] == [
        ("system", "/var/log/syslog", "auto"),
        ("system", "/var/log/auth.log", "syslog"),
    ]
