"""Typed reading of config.yaml: key paths in errors, value checks, and secrets."""

from __future__ import annotations

import re
from collections.abc import Callable
from collections.abc import Mapping as AbstractMapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from guide.errors import ConfigError
from guide.yamlsrc import Mapping

T = TypeVar("T")
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$")


class Section:
    """Typed access to one mapping of the YAML, reporting errors by key path."""

    def __init__(self, data: Any, path: str, source: str, line: int = 1) -> None:
        if data is None:
            data = Mapping()
        if not isinstance(data, dict):
            raise ConfigError(
                path or "(top level)", "must be a mapping of keys", source=f"{source}:{line}"
            )
        self.data: dict[str, Any] = data
        self.path = path
        self.source = source
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        """The full key path of `name`, e.g. smtp.port."""
        return f"{self.path}.{name}" if self.path else name

    def where(self, name: str) -> str:
        """file:line of `name` (or of this section when the key is absent)."""
        return f"{self.source}:{self._line(name)}"

    def error(self, name: str, message: str) -> ConfigError:
        """A ConfigError for `name`, with its key path and file:line."""
        return ConfigError(self.key(name), message, source=self.where(name))

    def get(self, name: str, default: T, check: Callable[[Any], T], expected: str) -> T:
        """The checked value of `name`, or `default` when absent; `expected` on a bad value."""
        self.used.add(name)
        if name not in self.data or self.data[name] is None:
            return default
        try:
            return check(self.data[name])
        except (TypeError, ValueError) as err:
            raise self.error(name, expected) from err

    def section(self, name: str) -> Section:
        """The nested mapping `name` (empty when absent)."""
        self.used.add(name)
        return Section(self.data.get(name), self.key(name), self.source, self._line(name))

    def _line(self, name: str) -> int:
        return self.data.line_of(name) if isinstance(self.data, Mapping) else 1

    def finish(self) -> None:
        """Refuse keys nobody asked for: a misspelt key must not be silently ignored."""
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.error(unknown[0], "unknown key (misspelt? see the comments in config.yaml)")


def as_string(value: Any) -> str:
    """A string, as is."""
    if not isinstance(value, str):
        raise TypeError(value)
    return value


def int_range(low: int, high: int) -> Callable[[Any], int]:
    """A check for an integer from `low` to `high` (booleans are not integers here)."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(value)
        return value

    return check


def number_range(low: float, high: float) -> Callable[[Any], float]:
    """A check for a number from `low` to `high`."""

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(value)
        if not low <= value <= high:
            raise ValueError(value)
        return float(value)

    return check


def as_boolean(value: Any) -> bool:
    """true or false, nothing else."""
    if not isinstance(value, bool):
        raise TypeError(value)
    return value


def choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    """A check for one of `options`."""

    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(value)
        return str(value)

    return check


def email_address(value: Any) -> str:
    """An email address, or '' for none."""
    if value == "":
        return ""
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise ValueError(value)
    return value


def http_url(value: Any) -> str:
    """An http(s) URL without query, fragment or whitespace; no trailing slash."""
    if not isinstance(value, str):
        raise TypeError(value)
    # urlsplit quietly drops tabs and line breaks, so check for them before it does.
    if any(ord(ch) <= 32 or ch == "\x7f" for ch in value):
        raise ValueError(value)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(value)
    return value.rstrip("/")


def plain_text(value: Any) -> str:
    """One line of text without control characters (it may end up in a header)."""
    # Footer and sender text ends up in headers or emails: one line, no control characters.
    text = as_string(value)
    if any(ord(ch) < 32 or ch in "\u2028\u2029\x85\x7f" for ch in text):
        raise ValueError(value)
    return text


def read_secret(
    name: str,
    *,
    env: AbstractMapping[str, str],
    file_value: str,
    file_key: str,
    base: Path,
    source: str,
) -> str:
    """A secret from $DRG_<NAME>, a `*_file` key, or systemd's $CREDENTIALS_DIRECTORY/<name>."""
    from_env = env.get(f"DRG_{name.upper()}")
    if from_env:
        return from_env
    candidates: list[tuple[Path, str]] = []
    if file_value:
        candidates.append((base / Path(file_value).expanduser(), file_key))
    elif env.get("CREDENTIALS_DIRECTORY"):
        credential = Path(env["CREDENTIALS_DIRECTORY"]) / name
        if credential.exists():
            candidates.append((credential, "$CREDENTIALS_DIRECTORY"))
    for path, key in candidates:
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ConfigError(key, f"cannot read {path}: {err.strerror}", source=source) from err
    return ""
