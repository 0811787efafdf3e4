"""Build the detector a config asks for: its rule files, minus disabled ids, compiled once."""

from __future__ import annotations

from irwatchd.config import LoadedConfig
from irwatchd.detection.engine import Detector
from irwatchd.detection.rules import expand_rule_paths, load_rules
from irwatchd.errors import ConfigError, Problem


def build_detector(loaded: LoadedConfig, *, prefilter: bool = True) -> Detector:
    """Load every configured rule file and compile the detector, or raise `ConfigError`."""
    settings = loaded.config.rules
    paths = expand_rule_paths(settings.files, loaded.base)
    if not paths:
        where = str(loaded.path) if loaded.path is not None else "built-in defaults"
        raise ConfigError(
            [Problem(where, None, "rules.files",
                     f"no rule file matches {settings.files!r}; point it at etc/rules.d/*.yaml")]
        )  # fmt: skip
    rules = load_rules(paths, settings.disabled)
    return Detector(rules, prefilter=prefilter)
