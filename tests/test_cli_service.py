"""The operator commands' help and `irwatchd version`."""

from __future__ import annotations

import json

from irwatchd import __version__
from tests.helpers import run_cli


def test_version_text() -> None:
    result = run_cli("version")

    assert result.returncode == 0
    assert result.stdout == f"irwatchd {__version__}\n"


def test_version_json_lists_dependencies() -> None:
    result = run_cli("version", "--json")
    document = json.loads(result.stdout)

    assert result.returncode == 0
    assert document["irwatchd"] == __version__
    assert document["python"].startswith("3.")
    assert document["dependencies"]["prometheus-client"] == "0.26.0"
    assert document["dependencies"]["structlog"] is not None


def test_help_lists_operator_commands() -> None:
    result = run_cli("--help")

    assert result.returncode == 0
    for command in ("run", "check", "status", "reload", "version"):
        assert command in result.stdout


def test_status_and_reload_take_state_dir() -> None:
    for command in ("status", "reload"):
        result = run_cli(command, "--help")

        assert result.returncode == 0
        assert "--state-dir" in result.stdout
        assert "--config" in result.stdout
