"""A secret from the config, such as a webhook key or an SMTP password, kept out of reprs."""

from __future__ import annotations

from typing import Any


class Secret:
    """A string that shows as `Secret('**********')`, so a logged config never shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        """Return the secret itself."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __eq__(self, other: object) -> bool:
        # Equal by value, so a changed secret restarts the channel's worker on reload.
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def decode_secret(target: type[Any], value: Any) -> Any:
    """Build a `Secret` from a string in the document; this is msgspec's `dec_hook`."""
    if target is Secret:
        if isinstance(value, str):
            return Secret(value)
        raise TypeError(f"Expected `str`, got `{type(value).__name__}`")
    raise NotImplementedError(f"no decoder for {target!r}")
