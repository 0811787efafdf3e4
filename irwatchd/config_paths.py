"""The places searched for the config file. They are kept apart from the config schema, so
commands that only need the path do not import the schema."""

from __future__ import annotations

from pathlib import Path

CHECKOUT_CONFIG = Path(__file__).resolve().parent.parent / "etc" / "irwatchd.yaml"
INSTALLED_CONFIG = Path("/etc/irwatchd/irwatchd.yaml")
INSTALLED_STATE_DIR = Path("/var/lib/irwatchd")


def default_config_path() -> Path | None:
    """Return the config to use without `-c`: the checkout's `etc/`, else `/etc/irwatchd/`."""
    for candidate in (CHECKOUT_CONFIG, INSTALLED_CONFIG):
        if candidate.is_file():
            return candidate
    return None
