"""The rules and line limit of `irwatchd detect`, cached once the config has been validated.

Importing pydantic with the config and rule file schemas, then validating every rule file,
takes about half of the start-up of a `detect` run (0.17 of 0.33 s here), and it is the same
work for each file read. So after one full load, the enabled rules and `max_line_bytes` are
stored in the cache folder of the Hyperscan databases (see `hscache.py`).

An entry is used only when everything that went into it is unchanged: the bytes of the config
file, the files its rule globs match and their bytes, and the irwatchd code that validated
them. Otherwise `detect` loads and validates as before, with the same errors, and replaces
the entry.
"""

from __future__ import annotations

import hashlib
import marshal
import os
from dataclasses import dataclass, fields
from pathlib import Path

from irwatchd import __version__
from irwatchd.detection.hscache import cache_dir, read_private, store_file
from irwatchd.detection.rule import Rule, expand_rule_paths
from irwatchd.logger import get_logger

log = get_logger(__name__)

_FORMAT = 1
_PACKAGE = Path(__file__).resolve().parent.parent
_VALIDATING_CODE = (
    "config.py",
    "config_paths.py",
    "detection/loader.py",
    "detection/rule.py",
    "detection/rules.py",
    "detection/settings_cache.py",
    "yamlload.py",
)
"""Package files whose change may change what a config validates to."""

_RULE_FIELDS = [field.name for field in fields(Rule)]
_EXAMPLES = _RULE_FIELDS.index("match_examples")


@dataclass(frozen=True, slots=True)
class DetectSettings:
    """The part of a config that `detect` reads: the enabled rules, in load order, and the
    line limit.

    Rules from a cache entry have no `match_examples`, which only `check` and `eval` read.
    """

    rules: list[Rule]
    max_line_bytes: int


def load_detect_settings(config_path: Path | None) -> DetectSettings:
    """Return the settings of `config_path` (None: built-in defaults), cached when unchanged.

    Raise `ConfigError` as `load_config` and `build_detector` do for an invalid config.
    """
    entry_path = _entry_path(config_path)
    if entry_path is not None:
        cached = _read_entry(entry_path, config_path)
        if cached is not None:
            return cached
    # Imported here, so a run that finds its entry never imports pydantic.
    from irwatchd.config import load_config
    from irwatchd.detection.loader import enabled_rules

    loaded = load_config(config_path)
    rules, rule_files = enabled_rules(loaded)
    settings = DetectSettings(rules, loaded.config.max_line_bytes)
    if entry_path is not None:
        data = _entry_bytes(
            config_path, loaded.base, loaded.config.rules.files, rule_files, settings
        )
        if data is not None:
            store_file(entry_path, lambda: data, "detect-settings-*.marshal")
    return settings


def _entry_path(config_path: Path | None) -> Path | None:
    folder = cache_dir()
    if folder is None:
        return None
    name = str(config_path.resolve()) if config_path is not None else f"defaults in {Path.cwd()}"
    return folder / f"detect-settings-{hashlib.sha256(name.encode()).hexdigest()[:32]}.marshal"


def _code_stamp() -> list[object]:
    """Return the version and the size and change time of each validating module."""
    stamp: list[object] = [__version__]
    for name in _VALIDATING_CODE:
        info = os.stat(_PACKAGE / name)
        stamp.append((name, info.st_size, info.st_mtime_ns))
    return stamp


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _base_of(config_path: Path | None) -> Path:
    return config_path.resolve().parent if config_path is not None else Path.cwd()


def _entry_bytes(
    config_path: Path | None,
    base: Path,
    patterns: list[str],
    rule_files: list[Path],
    settings: DetectSettings,
) -> bytes | None:
    """Serialise an entry, or return None when a file changed while it was loaded."""
    try:
        key = _key(config_path, base, patterns)
    except OSError:
        return None
    if key[-1] != [(str(path), _digest(path)) for path in rule_files]:
        return None  # a rule file changed between the load and now
    rows = []
    for rule in settings.rules:
        row = [getattr(rule, name) for name in _RULE_FIELDS]
        row[_EXAMPLES] = ()
        rows.append(tuple(row))
    return marshal.dumps((_FORMAT, key, settings.max_line_bytes, rows))


def _key(config_path: Path | None, base: Path, patterns: list[str]) -> list[object]:
    """Return what an entry depends on; the rule files and their digests come last."""
    config_digest = _digest(config_path) if config_path is not None else ""
    rule_files = [(str(path), _digest(path)) for path in expand_rule_paths(patterns, base)]
    return [_code_stamp(), str(base), config_digest, list(patterns), rule_files]


def _read_entry(entry_path: Path, config_path: Path | None) -> DetectSettings | None:
    """Return the settings of a current entry, or None when it is missing, stale or damaged."""
    data = read_private(entry_path)
    if data is None:
        return None
    try:
        # The folder and the file are private to this user, as for the Hyperscan databases.
        version, key, max_line_bytes, rows = marshal.loads(data)  # noqa: S302
        if version != _FORMAT:
            return None
        _, base, _, patterns, _ = key
        if _key(config_path, Path(base), patterns) != key or Path(base) != _base_of(config_path):
            return None
        rules = [Rule(*row) for row in rows]
    except (OSError, ValueError, TypeError, EOFError) as error:
        log.warning("settings_cache_unreadable", path=str(entry_path), error=str(error),
                    hint="the config is loaded again and the entry replaced")  # fmt: skip
        return None
    return DetectSettings(rules, max_line_bytes)
