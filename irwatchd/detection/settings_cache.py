"""The rules and line limit of `irwatchd detect`, cached once the config has been validated.

Parsing the config and rule files with PyYAML and validating them against their schemas is
the same work for each file read. So after one full load, the enabled rules and `max_line_bytes` are
stored in the cache folder of the Hyperscan databases (see `hscache.py`).

An entry is used only when everything that went into it is unchanged: the bytes of the config
file, the files its rule globs match and their bytes, and the irwatchd code that validated
them. Otherwise `detect` loads and validates as before, with the same errors, and replaces
the entry.
"""

from __future__ import annotations

import hashlib
import importlib.util
import marshal
import os
import stat
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
    "detection/finding.py",
    "detection/loader.py",
    "detection/rule.py",
    "detection/rules.py",
    "detection/settings_cache.py",
    "errors.py",
    "parsing/record.py",
    "schema.py",
    "secret.py",
    "yamlload.py",
)
"""Package files whose change may change what a config validates to."""

_VALIDATING_LIBRARIES = ("msgspec", "yaml")
"""Libraries whose upgrade may change it too; their `__init__.py` files are stamped."""

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
    # Imported here, so a run that finds its entry imports neither PyYAML nor the schemas.
    from irwatchd.config import load_config
    from irwatchd.detection.loader import enabled_rules

    # The inputs are hashed before and after each load, and an entry is written only when
    # nothing changed in between: rules from old bytes must never be stored under new ones.
    config_before = _config_digest(config_path) if entry_path is not None else None
    loaded = load_config(config_path)
    patterns = list(loaded.config.rules.files)
    key_before = _key_or_none(config_path, loaded.base, patterns) if entry_path else None
    rules, _ = enabled_rules(loaded)
    settings = DetectSettings(rules, loaded.config.max_line_bytes)
    if entry_path is not None and key_before is not None:
        key_after = _key_or_none(config_path, loaded.base, patterns)
        if key_after == key_before and key_before[2] == config_before:
            data = _entry_bytes(key_before, settings)
            store_file(entry_path, lambda: data, "detect-settings-*.marshal")
    return settings


def _entry_path(config_path: Path | None) -> Path | None:
    """Return the entry of a config, or None when it gets none: no cache, or not a file.

    Only a regular file gets an entry, because hashing a named pipe would read it a second
    time and wait for a writer. A symbolic link loop gets none either, so `load_config`
    reports it as it does without the cache.
    """
    folder = cache_dir()
    if folder is None:
        return None
    if config_path is None:
        name = f"defaults in {Path.cwd()}"
    else:
        try:
            if not stat.S_ISREG(config_path.stat().st_mode):
                return None
            name = str(config_path.resolve())
        except (OSError, RuntimeError):
            return None
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:32]
    return folder / f"detect-settings-{digest}.marshal"


def _code_stamp() -> list[object]:
    """Return the version, and the size and change time of each validating source file."""
    stamp: list[object] = [__version__]
    files = [(name, _PACKAGE / name) for name in _VALIDATING_CODE]
    for library in _VALIDATING_LIBRARIES:
        spec = importlib.util.find_spec(library)
        files.append((library, Path(spec.origin if spec and spec.origin else library)))
    for name, path in files:
        info = os.stat(path)
        stamp.append((name, info.st_size, info.st_mtime_ns))
    return stamp


def _digest(path: Path) -> str:
    """Return the SHA-256 of a regular file; raise OSError for anything else.

    The type is checked before the file is opened, because opening a named pipe waits for
    a writer.
    """
    if not stat.S_ISREG(path.stat().st_mode):
        raise OSError(f"{path} is not a regular file")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _base_of(config_path: Path | None) -> Path:
    return config_path.resolve().parent if config_path is not None else Path.cwd()


def _entry_bytes(key: list[object], settings: DetectSettings) -> bytes:
    """Serialise an entry: its key, the line limit and each rule without its examples."""
    rows = []
    for rule in settings.rules:
        row = [getattr(rule, name) for name in _RULE_FIELDS]
        row[_EXAMPLES] = ()
        rows.append(tuple(row))
    return marshal.dumps((_FORMAT, key, settings.max_line_bytes, rows))


def _config_digest(config_path: Path | None) -> str | None:
    try:
        return _digest(config_path) if config_path is not None else ""
    except OSError:
        return None


def _key_or_none(config_path: Path | None, base: Path, patterns: list[str]) -> list[object] | None:
    try:
        return _key(config_path, base, patterns)
    except OSError:
        return None


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
        rules = [Rule(*row) for row in rows]
    except (ValueError, TypeError, EOFError) as error:
        log.warning("settings_cache_unreadable", path=str(entry_path), error=str(error),
                    hint="the config is loaded again; a valid one replaces the entry")  # fmt: skip
        return None
    try:
        current = _key(config_path, Path(base), patterns)
    except OSError:
        return None  # a file is missing or unreadable now: the full load reports it
    if current != key or Path(base) != _base_of(config_path):
        return None
    return DetectSettings(rules, max_line_bytes)
