"""The root error class, its subclasses, and the sysexits exit codes the CLI returns."""

from __future__ import annotations

from dataclasses import dataclass

# sysexits(3) codes, so that systemd and scripts can tell the causes apart.
EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78


class IrwatchdError(Exception):
    """Root of every error irwatchd raises on purpose; `exit_code` is its sysexits code."""

    exit_code = EX_SOFTWARE


@dataclass(frozen=True, slots=True)
class Problem:
    """One invalid value in a config or rule file, with where it is and how to fix it."""

    path: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class ConfigError(IrwatchdError):
    """Invalid configuration or rules; carries every problem found, not only the first."""

    exit_code = EX_CONFIG

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


class InputError(IrwatchdError):
    """An input file that is missing or cannot be read."""

    exit_code = EX_NOINPUT


class DataError(IrwatchdError):
    """Input that was read but is not valid (a broken audit chain, a bad corpus line)."""

    exit_code = EX_DATAERR


class AlreadyRunningError(IrwatchdError):
    """Another daemon holds the lock on the same state directory."""

    exit_code = EX_TEMPFAIL


class UnavailableError(IrwatchdError):
    """A service the command needs is not there, such as a daemon that is not running."""

    exit_code = EX_UNAVAILABLE


class CantCreateError(IrwatchdError):
    """A file or directory irwatchd must create, such as the state directory, cannot be made."""

    exit_code = EX_CANTCREAT


class NoPermissionError(IrwatchdError):
    """The operating system denied access to a file, a directory or a process."""

    exit_code = EX_NOPERM
