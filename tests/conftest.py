"""Test-wide clean-up: no daemon started by a test outlives it, also when the test fails."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import kill_started_daemons


@pytest.fixture(autouse=True)
def _no_daemon_left_running() -> Iterator[None]:
    yield
    kill_started_daemons()


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """Mount a 2 MiB tmpfs, which a test can fill; skip unless mounting works (root)."""
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if os.geteuid() != 0 or mount is None or umount is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    target = tmp_path / "tiny"
    target.mkdir()
    result = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(target)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run([umount, "-l", str(target)], capture_output=True, timeout=30, check=False)
