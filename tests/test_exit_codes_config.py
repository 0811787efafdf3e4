"""Exit codes for missing and unreadable files, as the exit code table of docs/operations.md
states them, and the messages for config mistakes a new user makes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import (
    ROOT,
    SERVICE_RULES,
    irwatchd_command,
    run_cli,
    run_without_override,
    write_service_config,
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_service_config(tmp_path / "etc")


@pytest.mark.parametrize("command", ["check", "run"])
def test_missing_config_exits_78(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "nosuch.yaml"
    result = run_cli(command, "-c", str(missing))
    assert result.returncode == 78
    assert f"{missing}: file not found" in result.stderr


def test_unreadable_config_exits_78(tmp_path: Path, config: Path) -> None:
    config.chmod(0)
    result = run_without_override("check", "-c", str(config))
    assert result.returncode == 78
    assert "Permission denied" in result.stderr


def test_detect_missing_input_exits_66(tmp_path: Path, config: Path) -> None:
    result = run_cli("detect", "-c", str(config), str(tmp_path / "missing.log"))
    assert result.returncode == 66
    assert "missing.log" in result.stderr


def test_detect_unreadable_input_exits_77(tmp_path: Path, config: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("x\n")
    log.chmod(0)
    result = run_without_override("detect", "-c", str(config), str(log))
    assert result.returncode == 77
    assert "Permission denied" in result.stderr


def test_scan_missing_input_exits_66(tmp_path: Path, config: Path) -> None:
    result = run_cli("scan", "-c", str(config), str(tmp_path / "missing.log"))
    assert result.returncode == 66
    assert "missing.log" in result.stderr


def test_scan_unreadable_input_exits_77(tmp_path: Path, config: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("x\n")
    log.chmod(0)
    result = run_without_override("scan", "-c", str(config), str(log))
    assert result.returncode == 77
    assert "permission denied" in result.stderr


def test_docs_table_names_each_rule() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    table = text[text.index("## Exit codes") :]
    rows = {
        line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")
    }
    assert "`detect`" in rows["65"]
    assert "`scan`" in rows["66"]
    assert "config" in rows["78"]
    assert "missing" in rows["78"]
    assert "unreadable" in rows["78"]


@pytest.fixture
def installed_copy(tmp_path: Path) -> Path:
    """Copy the package alone, without etc/, as a pip install would lay it out."""
    if Path("/etc/irwatchd/irwatchd.yaml").exists():
        pytest.skip("/etc/irwatchd/irwatchd.yaml exists, so an installed copy would use it")
    site = tmp_path / "site"
    shutil.copytree(ROOT / "irwatchd", site / "irwatchd")
    return site


def run_installed(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        irwatchd_command(*args), cwd=site, capture_output=True, text=True, timeout=60,
        check=False, env={**os.environ, "PYTHONPATH": str(site)},
    )  # fmt: skip


@pytest.mark.parametrize("command", ["check", "status", "run"])
def test_installed_without_config_exits_78(installed_copy: Path, command: str) -> None:
    result = run_installed(installed_copy, command)
    assert result.returncode == 78
    assert "no config file found at /etc/irwatchd/irwatchd.yaml or " in result.stderr
    assert f"{installed_copy}/etc/irwatchd.yaml" in result.stderr
    assert "pass -c FILE" in result.stderr


def test_installed_status_with_state_dir(installed_copy: Path, tmp_path: Path) -> None:
    result = run_installed(installed_copy, "status", "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 69
    assert "no config file found" not in result.stderr


def test_rules_files_no_match_hint(tmp_path: Path) -> None:
    config = tmp_path / "irwatchd.yaml"
    config.write_text("rules:\n  files: [nothing/*.yaml]\n")
    result = run_cli("check", "-c", str(config))
    assert result.returncode == 78
    assert f"relative paths start at {tmp_path}" in result.stderr
    assert "rules.d/*.yaml next to the config file" in result.stderr
    assert "etc/rules.d" not in result.stderr
    assert f"{config}:2: rules.files: no rule file matches" in result.stderr


def test_unknown_disabled_rule_id(tmp_path: Path) -> None:
    config = write_service_config(tmp_path, rules={"files": ["rules.d/*.yaml"]})
    config.write_text(
        "rules:\n"
        "  files: [rules.d/*.yaml]\n"
        "  disabled: [test-ssh-failed, test-no-such-rule]\n"
    )  # fmt: skip
    result = run_cli("check", "-c", str(config))
    assert result.returncode == 78
    assert f"{config}:3: rules.disabled: unknown rule id 'test-no-such-rule'" in result.stderr
    assert "'test-ssh-failed'" not in result.stderr


def test_known_disabled_rule_id_passes(tmp_path: Path) -> None:
    config = tmp_path / "irwatchd.yaml"
    write_service_config(tmp_path)
    config.write_text("rules:\n  files: [rules.d/*.yaml]\n  disabled: [test-sudo-denied]\n")
    result = run_cli("check", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert "1 rules" in result.stdout


@pytest.mark.parametrize(
    ("pattern", "has_hint"),
    [("'(a'", False), ("'a(?=b)'", True), ("'(a)\\1'", True), ("'x{1001}'", False)],
)
def test_re2_error_hint(tmp_path: Path, pattern: str, has_hint: bool) -> None:
    config = write_service_config(tmp_path)
    rules = tmp_path / "rules.d" / "10-test.yaml"
    broken = SERVICE_RULES.replace(
        "pattern: 'sudo: +(?P<user>\\S+) : user NOT in sudoers'", f"pattern: {pattern}"
    )
    assert broken != SERVICE_RULES
    rules.write_text(broken)
    result = run_cli("check", "-c", str(config))
    assert result.returncode == 78
    assert "RE2 cannot compile" in result.stderr
    assert ("no backreferences or lookaround" in result.stderr) is has_hint


def test_check_rejects_state_dir_file(tmp_path: Path) -> None:
    occupied = tmp_path / "state"
    occupied.write_text("not a folder\n")
    config = write_service_config(tmp_path)
    config.write_text(f"rules:\n  files: [rules.d/*.yaml]\nstate_dir: {occupied}\n")

    result = run_cli("check", "-c", str(config))

    assert result.returncode == 78
    assert f"{config}:3: state_dir: '{occupied}' is a file, not a directory" in result.stderr


def test_check_warns_without_sources(tmp_path: Path) -> None:
    config = write_service_config(tmp_path, state_dir=str(tmp_path / "state"))

    result = run_cli("check", "-c", str(config))

    assert result.returncode == 0, result.stderr
    assert "warning: " in result.stderr
    assert "no sources configured" in result.stderr
    assert "`irwatchd run` without --watch exits 78" in result.stderr
