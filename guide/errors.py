"""Exceptions of the domain: each one carries where the problem is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class GuideError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(GuideError, ValueError):
    """A configuration value is missing or wrong; names the key path."""

    def __init__(self, key: str, message: str, *, source: str | None = None) -> None:
        self.key = key
        self.message = message
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {message}")


class YAMLSyntaxError(GuideError, ValueError):
    """A file is not valid YAML; carries 1-based line and column."""

    def __init__(self, path: Path, line: int, column: int, message: str) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.message = message
        super().__init__(f"{path}:{line}:{column}: {message}")


@dataclass(frozen=True)
class Problem:
    """One finding of the lesson checker, printed as `file:line: field: message`."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        field = f"{self.field}: " if self.field else ""
        return f"{self.file}:{self.line}: {field}{self.message}"


class LessonError(GuideError, ValueError):
    """One or more lesson files are invalid; `problems` lists every one of them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        first = str(problems[0]) if problems else "invalid lessons"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(first + more)


class HeaderInjectionError(GuideError, ValueError):
    """A value meant for a header contains a line break or control character."""


class TransportConfigError(GuideError):
    """The transport cannot work as configured (authentication, TLS); names the config key."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


class TokenError(GuideError, ValueError):
    """A signed link is tampered with, made for another purpose, expired, or points at nobody."""

    def __init__(self, expired: bool) -> None:
        self.expired = expired
        super().__init__("link expired" if expired else "invalid link")


class LifecycleError(GuideError, ValueError):
    """A subscriber action does not apply to this subscriber in their current state."""


class DatabaseError(GuideError):
    """The database cannot be reached or opened right now; names the config key, URL redacted."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")
