"""The settings cache of `irwatchd detect`: used only while every input is unchanged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from irwatchd.detection.settings_cache import load_detect_settings
from irwatchd.errors import ConfigError
from tests.helpers import ROOT

FAILED = "Dec 10 06:55:48 LabSZ sshd[24200]: Failed password for root from 192.0.2.1 port 22 ssh2"
EXTRA_RULE = """rules:
  - id: test-extra-rule
    category: scanner
    severity: low
    severity_reason: a test rule
    description: a test rule
    source_types: [syslog]
    pattern: 'extra-marker-(?P<user>\\w+)'
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Return a copy of the default config and rules, with a cache folder of this test."""
    shutil.copytree(ROOT / "etc" / "rules.d", tmp_path / "rules.d")
    path = tmp_path / "irwatchd.yaml"
    shutil.copyfile(ROOT / "etc" / "irwatchd.yaml", path)
    monkeypatch.setenv("IRWATCHD_CACHE_DIR", str(tmp_path / "cache"))
    return path


def _rule_ids(config: Path) -> list[str]:
    return [rule.id for rule in load_detect_settings(config).rules]


def _entries(config: Path) -> list[Path]:
    return sorted((config.parent / "cache").glob("detect-settings-*.marshal"))


def _run_python(program: str, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=environment,
        cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip


def test_entry_gives_the_same_rules(config: Path) -> None:
    first = load_detect_settings(config)
    assert len(_entries(config)) == 1
    second = load_detect_settings(config)
    assert [rule.id for rule in second.rules] == [rule.id for rule in first.rules]
    assert [rule.patterns for rule in second.rules] == [rule.patterns for rule in first.rules]
    assert [rule.line for rule in second.rules] == [rule.line for rule in first.rules]
    assert second.max_line_bytes == first.max_line_bytes
    assert all(rule.match_examples == () for rule in second.rules)


def test_changed_rule_file_misses(config: Path) -> None:
    load_detect_settings(config)
    sshd = config.parent / "rules.d" / "10-sshd.yaml"
    sshd.write_text(sshd.read_text().replace("id: sshd-failed-auth\n", "id: sshd-failed-x\n"))
    ids = _rule_ids(config)
    assert "sshd-failed-x" in ids
    assert "sshd-failed-auth" not in ids


def test_new_rule_file_misses(config: Path) -> None:
    load_detect_settings(config)
    (config.parent / "rules.d" / "99-extra.yaml").write_text(EXTRA_RULE)
    assert "test-extra-rule" in _rule_ids(config)
    (config.parent / "rules.d" / "99-extra.yaml").unlink()
    assert "test-extra-rule" not in _rule_ids(config)


def test_changed_config_misses(config: Path) -> None:
    load_detect_settings(config)
    text = config.read_text()
    config.write_text(text.replace("disabled: []", 'disabled: ["sshd-failed-auth"]'))
    assert "sshd-failed-auth" not in _rule_ids(config)
    config.write_text(text.replace("max_line_bytes: 65536", "max_line_bytes: 131072"))
    assert load_detect_settings(config).max_line_bytes == 131072
    config.write_text(text.replace("max_line_bytes: 65536", "max_line_bytes: 100"))
    with pytest.raises(ConfigError, match="max_line_bytes"):
        load_detect_settings(config)


def test_invalid_config_after_entry_raises(config: Path) -> None:
    load_detect_settings(config)
    config.write_text(config.read_text().replace("disabled: []", 'disabled: ["no-such-rule"]'))
    with pytest.raises(ConfigError, match="no-such-rule"):
        load_detect_settings(config)


def test_damaged_entry_is_replaced(config: Path) -> None:
    expected = _rule_ids(config)
    (entry,) = _entries(config)
    entry.write_bytes(b"\x00damaged")
    assert _rule_ids(config) == expected
    assert entry.read_bytes() != b"\x00damaged"


def test_writable_entry_is_ignored(config: Path) -> None:
    expected = _rule_ids(config)
    (entry,) = _entries(config)
    entry.chmod(0o666)
    assert _rule_ids(config) == expected
    # A group- or world-writable entry is not read, and is replaced by a private one.
    assert not entry.stat().st_mode & 0o022


def test_cached_detect_skips_pydantic(config: Path, tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text(FAILED + "\n")
    program = (
        "import sys\n"
        "from irwatchd.cli.main import main\n"
        f"code = main(['detect', '-c', {str(config)!r}, {str(log)!r}])\n"
        "print('pydantic' in sys.modules, 'yaml' in sys.modules, code, file=sys.stderr)\n"
    )
    environment = dict(os.environ, IRWATCHD_CACHE_DIR=str(tmp_path / "cache"))
    runs = [_run_python(program, environment) for _ in range(2)]
    assert runs[0].stderr.split()[-3:] == ["True", "True", "0"]
    assert runs[1].stderr.split()[-3:] == ["False", "False", "0"]
    assert runs[0].stdout == runs[1].stdout
    assert json.loads(runs[1].stdout)["rule"] == "sshd-failed-auth"
