"""Session fixtures every test module can reach without importing them."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.backends import postgres_server_url

# database_url asks for the session's PostgreSQL by name, so it must be visible everywhere.
__all__ = ["postgres_server_url"]


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """Undo what a command run in-process did to logging (cli/logs.py's setup_logging).

    Its handler writes to the sys.stderr of that moment, a capture that pytest closes after
    the test: every later log line at INFO (aiosmtpd logs each connection) then failed inside
    logging, which printed a traceback for it, slowing later tests by minutes.
    """
    # Loggers only, not the placeholders of names no module has asked for yet.
    loggers = [
        logging.root,
        *(lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)),
    ]
    saved = [(lg, lg.level, lg.handlers[:], lg.filters[:]) for lg in loggers]
    yield
    for lg, level, handlers, filters in saved:
        lg.setLevel(level)
        lg.handlers[:] = handlers
        lg.filters[:] = filters  # dictConfig adds its filters again on every call
