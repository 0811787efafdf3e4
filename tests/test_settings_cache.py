"""The settings cache of `irwatchd detect`: used only while every input is unchanged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from irwatchd.config import LoadedConfig
from irwatchd.detection import loader
from irwatchd.detection.rule import Rule
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


def test_cached_detect_skips_the_schemas(config: Path, tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text(FAILED + "\n")
    program = (
        "import sys\n"
        "from irwatchd.cli.main import main\n"
        f"code = main(['detect', '-c', {str(config)!r}, {str(log)!r}])\n"
        "print('irwatchd.schema' in sys.modules, 'yaml' in sys.modules, code, file=sys.stderr)\n"
    )
    environment = dict(os.environ, IRWATCHD_CACHE_DIR=str(tmp_path / "cache"))
    runs = [_run_python(program, environment) for _ in range(2)]
    assert runs[0].stderr.split()[-3:] == ["True", "True", "0"]
    assert runs[1].stderr.split()[-3:] == ["False", "False", "0"]
    assert runs[0].stdout == runs[1].stdout
    assert json.loads(runs[1].stdout)["rule"] == "sshd-failed-auth"


def test_fifo_config_gets_no_entry(config: Path, tmp_path: Path) -> None:
    # Hashing a named pipe would open it again and wait for a writer that never comes.
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    text = config.read_text()
    writer = threading.Thread(target=fifo.write_text, args=(text,), daemon=True)
    writer.start()
    settings = load_detect_settings(fifo)
    writer.join(timeout=10)
    assert "sshd-failed-auth" in [rule.id for rule in settings.rules]
    assert _entries(config) == []


def test_fifo_rule_file_gets_no_entry(config: Path) -> None:
    fifo = config.parent / "rules.d" / "99-fifo.yaml"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_text, args=(EXTRA_RULE,), daemon=True)
    writer.start()
    assert "test-extra-rule" in _rule_ids(config)
    writer.join(timeout=10)
    assert _entries(config) == []


def test_symlink_loop_config_raises_config_error(config: Path, tmp_path: Path) -> None:
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    with pytest.raises(ConfigError, match=r"loop\.yaml"):
        load_detect_settings(loop)


def test_undecodable_folder_name_works(config: Path, tmp_path: Path) -> None:
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/bad\xffdir"))
    shutil.copytree(config.parent / "rules.d", folder / "rules.d")
    shutil.copyfile(config, folder / "irwatchd.yaml")
    expected = _rule_ids(config)
    assert [rule.id for rule in load_detect_settings(folder / "irwatchd.yaml").rules] == expected
    assert [rule.id for rule in load_detect_settings(folder / "irwatchd.yaml").rules] == expected


def test_broken_rule_link_reports_no_cache_warning(
    config: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    load_detect_settings(config)
    (config.parent / "rules.d" / "99-gone.yaml").symlink_to(config.parent / "missing.yaml")
    with pytest.raises(ConfigError, match="99-gone"):
        load_detect_settings(config)
    captured = capfd.readouterr()
    assert "settings_cache_unreadable" not in captured.out + captured.err


def test_rule_edit_during_load_writes_no_entry(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rules read from the old bytes must not be stored under the digest of the new ones.
    sshd = config.parent / "rules.d" / "10-sshd.yaml"
    original = loader.enabled_rules

    def edit_while_loading(loaded: LoadedConfig) -> tuple[list[Rule], list[Path]]:
        result = original(loaded)
        sshd.write_text(sshd.read_text().replace("id: sshd-failed-auth\n", "id: sshd-new\n"))
        return result

    monkeypatch.setattr(loader, "enabled_rules", edit_while_loading)
    assert "sshd-failed-auth" in _rule_ids(config)
    assert _entries(config) == []
    monkeypatch.setattr(loader, "enabled_rules", original)
    assert "sshd-new" in _rule_ids(config)
