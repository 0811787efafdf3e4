"""Test-wide clean-up: no daemon started by a test outlives it, also when the test fails."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import kill_started_daemons


@pytest.fixture(autouse=True)
def _no_daemon_left_running() -> Iterator[None]:
    yield
    kill_started_daemons()
