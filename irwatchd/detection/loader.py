"""Build the detector a config names: its rule files, minus disabled ids, compiled once."""

from __future__ import annotations

from pathlib import Path

from irwatchd.config import LoadedConfig
from irwatchd.detection.engine import Detector
from irwatchd.detection.rule import Rule, expand_rule_paths
from irwatchd.detection.rules import load_rules
from irwatchd.errors import ConfigError, Problem
from irwatchd.yamlload import line_of, load_yaml


def build_detector(loaded: LoadedConfig, *, prefilter: bool = True) -> Detector:
    """Load every configured rule file and compile the detector, or raise `ConfigError`."""
    rules, _ = enabled_rules(loaded)
    return Detector(rules, prefilter=prefilter)


def enabled_rules(loaded: LoadedConfig) -> tuple[list[Rule], list[Path]]:
    """Return the rules of the configured files minus disabled ids, and those files.

    Raise `ConfigError` when no file matches, a file is invalid or a disabled id is unknown.
    """
    settings = loaded.config.rules
    paths = expand_rule_paths(settings.files, loaded.base)
    if not paths:
        where = str(loaded.path) if loaded.path is not None else "built-in defaults"
        raise ConfigError(
            [Problem(where, config_line(loaded, ("rules", "files")), "rules.files",
                     f"no rule file matches {settings.files!r} (relative paths start at "
                     f"{loaded.base}); point it at rule files, such as rules.d/*.yaml next "
                     "to the config file")]
        )  # fmt: skip
    rules = load_rules(paths)
    _check_disabled(loaded, rules)
    disabled = set(settings.disabled)
    return [rule for rule in rules if rule.id not in disabled], paths


def _check_disabled(loaded: LoadedConfig, rules: list[Rule]) -> None:
    """Raise `ConfigError` naming each id in `rules.disabled` that no rule file defines."""
    known = {rule.id for rule in rules}
    unknown = [rule_id for rule_id in loaded.config.rules.disabled if rule_id not in known]
    if not unknown:
        return
    where = str(loaded.path) if loaded.path is not None else "built-in defaults"
    line = config_line(loaded, ("rules", "disabled"))
    raise ConfigError(
        [Problem(where, line, "rules.disabled",
                 f"unknown rule id {rule_id!r}; remove it, or fix its spelling to match an "
                 "`id:` in the rule files")
         for rule_id in unknown]
    )  # fmt: skip


def config_line(loaded: LoadedConfig, location: tuple[str, ...]) -> int | None:
    """Return the line of a key in the config file, or None without a file or that key."""
    if loaded.path is None:
        return None
    try:
        return line_of(load_yaml(loaded.path), location)
    except ConfigError:
        return None  # the file changed since it was loaded; report without a line
