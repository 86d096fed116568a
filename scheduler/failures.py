"""A dispatch pass that failed, told as one line naming the config key to look at."""

from __future__ import annotations

import logging
import sqlite3
from types import TracebackType

from sqlalchemy.exc import SQLAlchemyError

from guide.config import Config
from guide.database_errors import open_failure

log = logging.getLogger("scheduler.dispatch")

# Where a failure came from, judged by the modules its traceback passes through: an OSError
# is the database's when raised under the driver, the relay's when under a transport.
_DATABASE_MODULES = ("sqlalchemy.", "asyncpg.", "aiosqlite.", "sqlite3", "guide.store")
_RELAY_MODULES = ("delivery.transports.", "aiosmtplib.")


def relay_name(config: Config) -> str:
    """What the messages are handed to, as an operator would name it (host:port, a folder)."""
    if config.transport == "smtp":
        return f"{config.smtp.host}:{config.smtp.port}"
    if config.transport == "maildir":
        return f"the maildir {config.maildir_path}"
    return f"the {config.transport} transport"


def database_key(config: Config) -> tuple[str, str]:
    """The config key that says where the database is, and what it says (secrets hidden)."""
    if config.database_url:
        return "database.url", config.database_url
    return "state_dir", str(config.sqlite_path)


def describe(err: BaseException, config: Config) -> str | None:
    """One line for an expected fault (the database or the relay away); None for a bug."""
    modules = _modules(err.__traceback__)
    if isinstance(err, SQLAlchemyError | sqlite3.Error) or any(
        module.startswith(_DATABASE_MODULES) for module in modules
    ):
        key, where = database_key(config)
        # open_failure words it as a failure to open does, naming the key (and the password's
        # sources where the server refused it), with the location redacted.
        return f"the database did not answer: {open_failure(err, key, where)}"
    if isinstance(err, OSError) and any(module.startswith(_RELAY_MODULES) for module in modules):
        reason = err.strerror or str(err) or type(err).__name__
        return (
            f"relay {relay_name(config)} unreachable: {reason} "
            f"(check smtp.host, smtp.port and the relay)"
        )
    return None


def log_failed_pass(err: BaseException, config: Config) -> None:
    """One ERROR line for an expected fault, its traceback at DEBUG; a bug keeps its traceback."""
    line = describe(err, config)
    if line is None:
        log.error("dispatch pass failed", exc_info=err)
        return
    log.error("dispatch pass failed: %s; the next pass tries again", line)
    log.debug("the failed pass's traceback", exc_info=err)


def _modules(tb: TracebackType | None) -> list[str]:
    found = []
    while tb is not None:
        found.append(str(tb.tb_frame.f_globals.get("__name__", "")))
        tb = tb.tb_next
    return found
