"""Default paths: FHS locations for an installed config, the checkout's folders otherwise."""

from __future__ import annotations

from pathlib import Path

from irwatchd.config import Config, LoadedConfig, load_config
from irwatchd.config_paths import CHECKOUT_CONFIG
from irwatchd.state_dir import locate_state_dir

INSTALLED = Path("/etc/irwatchd/irwatchd.yaml")


def test_installed_config_defaults_to_var_lib() -> None:
    loaded = LoadedConfig(Config(), INSTALLED)

    assert loaded.state_dir == Path("/var/lib/irwatchd")


def test_installed_config_keeps_explicit_state_dir() -> None:
    loaded = LoadedConfig(Config(state_dir="/srv/irwatchd"), INSTALLED)

    assert loaded.state_dir == Path("/srv/irwatchd")


def test_other_config_resolves_relative_state_dir(tmp_path: Path) -> None:
    loaded = LoadedConfig(Config(), tmp_path / "etc" / "irwatchd.yaml")

    assert loaded.state_dir == (tmp_path / "var").resolve()


def test_checkout_config_uses_checkout_var() -> None:
    loaded = load_config(CHECKOUT_CONFIG)

    assert loaded.state_dir == CHECKOUT_CONFIG.parent.parent / "var"


def test_state_dir_option_wins(tmp_path: Path) -> None:
    assert locate_state_dir(CHECKOUT_CONFIG, str(tmp_path)) == tmp_path
