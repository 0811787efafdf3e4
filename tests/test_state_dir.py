"""Finding the state directory: the commands that read it work while the config is broken."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import ROOT, run_cli

SAMPLES = ROOT / "samples"


def _broken_config(tmp_path: Path, state: Path) -> Path:
    config = tmp_path / "irwatchd.yaml"
    config.write_text(f"state_dir: {state}\nmax_line_byte: 4096\n")
    return config


def test_status_reads_state_dir_of_broken_config(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "status.json").write_text(json.dumps({"updated_at": "2026-12-05T00:00:00Z"}))
    config = _broken_config(tmp_path, state)

    result = run_cli("status", "--json", "-c", str(config))

    assert result.returncode == 69, result.stderr  # no daemon holds the lock
    assert json.loads(result.stdout)["state_dir"] == str(state)
    assert (
        f"warning: {config} has errors (see `irwatchd check`); using the state directory {state}"
        in result.stderr
    )


def test_check_still_refuses_broken_config(tmp_path: Path) -> None:
    config = _broken_config(tmp_path, tmp_path / "state")
    result = run_cli("check", "-c", str(config))
    assert result.returncode == 78
    assert "max_line_byte: unknown key" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["blocks", "list"],
        ["blocks", "add", "192.0.2.9"],
        ["incidents", "list"],
        ["audit", "verify"],
        ["evidence", "list"],
    ],
)
@pytest.mark.parametrize("under_file", [False, True])
def test_state_dir_that_is_a_file_exits_66(
    tmp_path: Path, command: list[str], under_file: bool
) -> None:
    occupied = tmp_path / "state"
    occupied.write_text("")
    state = occupied / "sub" if under_file else occupied
    result = run_cli(*command, "--state-dir", str(state))
    assert result.returncode == 66, result.stderr
    assert f"state directory {str(state)!r} is" in result.stderr
    assert "a file, not a directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_scan_into_file_state_dir_exits_73(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("")
    result = run_cli("scan", "--state-dir", str(state), str(SAMPLES / "auth.log"))
    assert result.returncode == 73, result.stderr
    assert "cannot create a scan folder" in result.stderr
