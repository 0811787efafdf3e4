"""The daemon's settings: the config plus the command-line overrides, resolved to paths."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from irwatchd.config import LoadedConfig, load_config
from irwatchd.detection.engine import Detector
from irwatchd.detection.examples import check_examples
from irwatchd.detection.loader import build_detector
from irwatchd.errors import ConfigError, Problem
from irwatchd.sources.tailer import WatchSpec, specs_from_paths

_TYPES = ("syslog", "access_log", "error_log", "json", "auto")
_TYPE_LIKE = re.compile(r"[a-z][a-z_]*")


def parse_watch_option(value: str) -> tuple[str, str]:
    """Split `PATH[:TYPE]` into a path and a source type (default `auto`).

    Raises `ConfigError` for an empty path, and for a suffix after the last `:` that looks
    like a type name (a lowercase word) but is not one, such as the typo `sylog`.
    """
    path, separator, kind = value.rpartition(":")
    if separator and kind in _TYPES:
        if not path:
            raise _watch_error(value, "the path before the type is empty")
        return path, kind
    if separator and path and _TYPE_LIKE.fullmatch(kind):
        raise _watch_error(value, f"unknown source type {kind!r}; use one of {', '.join(_TYPES)}")
    if not value.strip():
        raise _watch_error(value, "the path is empty; pass a file, directory or glob")
    return value, "auto"


def _watch_error(value: str, reason: str) -> ConfigError:
    return ConfigError([Problem("--watch", None, "", f"invalid value {value!r}: {reason}")])


@dataclass(frozen=True)
class DaemonSettings:
    """A loaded config with `--state-dir` and `--watch` applied."""

    loaded: LoadedConfig
    state_dir: Path
    watch_specs: list[WatchSpec]


def resolve_settings(
    config_path: Path | None, state_dir: str | None, watch: list[str] | None
) -> DaemonSettings:
    """Load the config and apply the overrides; raise `ConfigError` when nothing is watched."""
    loaded = load_config(config_path)
    root = Path(state_dir).absolute() if state_dir else loaded.state_dir
    if watch:
        triples = [(path, "application", kind) for path, kind in map(parse_watch_option, watch)]
    else:
        triples = [
            (str(loaded.resolve(spec.path)), group, spec.type)
            for group, spec in loaded.config.sources.all()
        ]
    if not triples:
        raise ConfigError([no_sources_problem(loaded)])
    return DaemonSettings(loaded, root, specs_from_paths(triples))


def no_sources_problem(loaded: LoadedConfig) -> Problem:
    """Return the problem of a config that names no log to watch."""
    where = str(loaded.path) if loaded.path else "built-in defaults"
    message = (
        "no sources configured; add paths under sources.system, sources.security or "
        "sources.application, or pass --watch"
    )
    return Problem(where, None, "sources", message)


@dataclass(frozen=True)
class ValidatedConfiguration:
    """Settings and a compiled detector that passed every check `irwatchd check` runs."""

    settings: DaemonSettings
    detector: Detector


def validate_configuration(
    config_path: Path | None, state_dir: str | None, watch: list[str] | None
) -> ValidatedConfiguration:
    """Load the config and rules, compile them and run every rule example.

    Raises `ConfigError` listing every problem. A reload swaps nothing until this returns,
    so a broken edit leaves the running configuration in place.
    """
    settings = resolve_settings(config_path, state_dir, watch)
    detector = build_detector(settings.loaded)
    problems = check_examples(detector)
    if problems:
        raise ConfigError(problems)
    return ValidatedConfiguration(settings, detector)
