"""Config validation: each invalid value named by file, line and key, with the values allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from irwatchd.config import EmailChannel, WebhookChannel, load_config
from irwatchd.detection.loader import build_detector, enabled_rules
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
        "2: blocking.backend: invalid value 'iptables'; allowed: 'command', 'nftables', 'simulate'",
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
        "3: alerts.channels.0.type: invalid value 'web'; "
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


def test_bad_list_items_hide_no_other_problem(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        "policy:\n  high: [audit, blok, ticket]\n  critical:\n    - audit\n    - forensic\n"
        "alerts:\n  channels:\n    - {type: email, recipients: [a@example.org]}\n"
        "    - {type: web, url: 'http://127.0.0.1:9/'}\n"
        "blocking:\n  duration_seconds: -5\n",
    )
    assert problems == [
        "2: policy.high.1: invalid value 'blok'; "
        "allowed: 'alert', 'audit', 'block', 'forensics', 'ticket'",
        "5: policy.critical.1: invalid value 'forensic'; "
        "allowed: 'alert', 'audit', 'block', 'forensics', 'ticket'",
        "8: alerts.channels.0.sender: required key is missing; add it",
        "9: alerts.channels.1.type: invalid value 'web'; "
        "allowed: 'webhook', 'slack', 'syslog', 'email'",
        "11: blocking.duration_seconds: Expected `float` >= 1.0, got -5",
    ]


def test_removal_breaks_no_check_across_fields(tmp_path: Path) -> None:
    # Once the bad command or the bad name is left out, `backend: command` lacks a command,
    # and the first channel's default name is webhook-1: neither is reported.
    problems = _problems(
        tmp_path,
        "blocking:\n  backend: command\n  command: ['']\n"
        "alerts:\n  channels:\n    - {type: webhook, name: SOC, url: 'http://127.0.0.1:9/'}\n"
        "    - {type: webhook, name: webhook-1, url: 'http://127.0.0.1:9/'}\n",
    )
    assert [problem.split(":")[1] for problem in problems] == [
        " blocking.command",
        " alerts.channels.0.name",
    ]


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("alerts:\n  channels:\n    type: email\n    password: swordfish\n", "swordfish"),
        ("alerts:\n  channels:\n    - {type: webhook, url: 'http://x/', secret: 31337}\n", "31337"),
        ("metrics:\n  1: x\nalerts:\n  webhook_url: 'http://user:hunter2@x/'\n", "hunter2"),
    ],
)
def test_secret_values_never_quoted(tmp_path: Path, text: str, hidden: str) -> None:
    problems = _problems(tmp_path, text)
    assert problems
    assert hidden not in "\n".join(problems)


def test_long_value_is_cut(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path, f"max_line_bytes: '{'9' * 5000}x'\n")
    assert len(problem) < 300
    assert "(5003 characters)" in problem


@pytest.mark.parametrize(
    "setting",
    [
        "poll_interval_seconds: .inf",
        "alerts:\n  reminder_minutes: .inf",
        "alerts:\n  channels:\n    - {type: slack, url: 'http://x/', timeout_seconds: 1.0e+300}",
        "correlation:\n  - {name: bf, categories: [failed_login], threshold: 5,"
        " window_seconds: .inf, category: brute_force, severity: high}",
        "blocking:\n  nft_priority: 100000000000000000000000000",
        "state_dir: ''",
        "metrics:\n  listen: '127.0.0.1:\u0661\u0662\u0663'",
        "metrics:\n  listen: '[127.0.0.1]:9117'",
        "alerts:\n  webhook_url: 'http://'",
        "blocking:\n  duration_seconds: 7200\n  max_duration_seconds: 3600",
        "correlation:\n"
        "  - {name: bf, categories: [failed_login], threshold: 5, window_seconds: 60,"
        " category: brute_force, severity: high}\n"
        "  - {name: bf, categories: [failed_login], threshold: 9, window_seconds: 60,"
        " category: brute_force, severity: high}",
    ],
)
def test_values_that_would_fail_later_are_refused(tmp_path: Path, setting: str) -> None:
    assert len(_problems(tmp_path, setting + "\n")) == 1


def test_yaml_mistakes_are_config_errors(tmp_path: Path) -> None:
    assert _problems(
        tmp_path, "blocking:\n  backend: nftables\nblocking:\n  backend: simulate\n"
    ) == ["3: invalid YAML: duplicate key 'blocking' (first at line 1); keep one of them"]
    assert _problems(tmp_path, "? [a, b]\n: 1\n") == [
        "1: invalid YAML: a key must be a plain value, not a list or mapping"
    ]
    deep = _problems(tmp_path, "[" * 5000 + "]" * 5000 + "\n")
    assert deep == [" invalid YAML: nested too deeply to read"]


def test_scalar_list_items_have_their_own_line(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "sources:\n  system:\n    - /var/log/syslog\n    - 42\n")
    assert problems == ["4: sources.system.1: Expected `str | mapping`, got `int`: 42"]


RULE = """\
rules:
  - id: test-count
    category: failed_login
    severity: medium
    severity_reason: one failure
    description: a failure with a repeat count
    source_types: [syslog]
    pattern: 'Failed password for (?P<user>\\\\S+)'
    count_field: {count_field}
"""


def test_count_field_must_name_a_group(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(RULE.format(count_field="repeats"))
    config = tmp_path / "irwatchd.yaml"
    config.write_text("rules:\n  files: [rules.yaml]\n")
    with pytest.raises(ConfigError) as caught:
        build_detector(load_config(config))
    (problem,) = caught.value.problems
    assert problem.key == "rules.test-count.count_field"
    assert "(?P<repeats>...)" in problem.message


def test_rule_file_named_twice_loads_once(tmp_path: Path) -> None:
    (tmp_path / "rules.d").mkdir()
    (tmp_path / "rules.d" / "a.yaml").write_text(RULE.format(count_field="user"))
    config = tmp_path / "irwatchd.yaml"
    config.write_text("rules:\n  files: [rules.d/a.yaml, 'rules.d/*.yaml']\n")
    rules, paths = enabled_rules(load_config(config))
    assert [rule.id for rule in rules] == ["test-count"]
    assert paths == [tmp_path / "rules.d" / "a.yaml"]


def test_missing_key_beside_bad_value_is_reported(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        "alerts:\n  channels:\n    - type: email\n      port: 0\n      recipients: [a@example.org]\n",
    )
    assert problems == [
        "3: alerts.channels.0.sender: required key is missing; add it",
        "4: alerts.channels.0.port: Expected `int` >= 1, got 0",
    ]


def test_config_path_that_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert str(caught.value) == f"{tmp_path}: is a folder, not a YAML file; pass the file"
