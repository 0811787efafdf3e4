"""Finding the state directory for commands that read a daemon's state, even from a broken config.

`irwatchd status`, `reload`, `incidents`, `evidence` and `audit` need only the state
directory. `blocks` also needs the allowlist and the back-end, so it stops at an error.
A person checks on a failed reload while the config has an error, so these commands still
read the `state_dir` it names, with a warning that the config needs fixing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from irwatchd.config import Config, LoadedConfig, load_config
from irwatchd.errors import ConfigError, InputError
from irwatchd.yamlload import load_yaml


def locate_state_dir(config_path: Path | None, state_dir: str | None) -> Path:
    """Return `--state-dir`, else the config's state directory; raise `InputError` for a file.

    A config that fails validation still gives its `state_dir`, with a warning on stderr,
    as long as the file is YAML and `state_dir` is a string or absent.
    """
    if state_dir:
        found = Path(state_dir).absolute()
    else:
        try:
            found = load_config(config_path).state_dir
        except ConfigError as error:
            found = _from_broken_config(config_path, error)
    return require_directory(found)


def require_directory(state_dir: Path) -> Path:
    """Return `state_dir`; raise `InputError` when it is a file or under one."""
    existing = next(folder for folder in (state_dir, *state_dir.parents) if folder.exists())
    if not existing.is_dir():
        where = "is a file" if existing == state_dir else f"is under {str(existing)!r}, a file"
        raise InputError(
            f"state directory {str(state_dir)!r} {where}, not a directory; pass the daemon's "
            "state directory with --state-dir, or fix state_dir in the config"
        )
    return state_dir


def _from_broken_config(config_path: Path | None, error: ConfigError) -> Path:
    """Return the state directory an invalid config names, or raise `error` if it names none."""
    if config_path is None:
        raise error
    try:
        document = load_yaml(config_path)
    except ConfigError:
        raise error from None
    raw = document.get("state_dir") if isinstance(document, dict) else None
    if raw is not None and (not isinstance(raw, str) or not raw):
        raise error
    found = LoadedConfig(Config(state_dir=raw), config_path.resolve()).state_dir
    print(
        f"warning: {config_path} has errors (see `irwatchd check`); using the state "
        f"directory {found}",
        file=sys.stderr,
    )
    return found
