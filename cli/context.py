"""What every command shares: the configuration, read once when a command runs, and the parts."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Concatenate, ParamSpec, TypeVar

import click

from cli.logs import secrets_of, setup_logging
from guide.config import Config, load_config
from guide.errors import ConfigError
from guide.redact import redact
from wiring import Parts, build

P = ParamSpec("P")
R = TypeVar("R")

# config.yaml beside run.py; an installed copy has run.py and cli/ side by side too.
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"


class ConfigurationError(click.ClickException):
    """The configuration file is wrong: one line on stderr naming file, line and key; exit 2."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        """Print `configuration error: <file:line: key: message>`, no usage text."""
        click.echo(f"configuration error: {redact(self.message)}", file=file, err=file is None)


@dataclass
class Invocation:
    """What the root group parsed; the configuration is read only once a command runs."""

    config_path: Path
    _config: Config | None = field(default=None, repr=False)

    def config(self) -> Config:
        """The validated configuration; logging is set up here, once, at the entry point."""
        if self._config is None:
            path = self.config_path
            # A missing default file means "use the defaults"; a missing named file is an error.
            chosen = path if path.exists() or path != DEFAULT_CONFIG else None
            try:
                self._config = load_config(chosen)
            except ConfigError as err:
                raise ConfigurationError(str(err)) from err
            setup_logging(self._config.log_level, secrets_of(self._config))
        return self._config


def pass_config(command: Callable[Concatenate[Config, P], R]) -> Callable[P, R]:
    """Call `command` with the configuration first; `--help` and usage errors never read it."""

    @functools.wraps(command)
    def with_config(*args: P.args, **kwargs: P.kwargs) -> R:
        invocation = click.get_current_context().find_object(Invocation)
        if invocation is None:  # only when a command is run outside the root group
            raise click.UsageError("run through the root command (run.py)")
        return command(invocation.config(), *args, **kwargs)

    return with_config


def with_parts(config: Config, action: Callable[[Parts], Awaitable[int]]) -> int:
    """Build the parts, run `action` on them, close them; the exit status of `action`."""

    async def run() -> int:
        parts = await build(config)
        try:
            return await action(parts)
        finally:
            await parts.close()

    return asyncio.run(run())
