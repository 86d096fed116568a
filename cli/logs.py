"""Logging configured once, at the entry point; library code only uses getLogger(__name__)."""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Sequence

from aiohttp.http_exceptions import HttpProcessingError
from sqlalchemy.engine import make_url

from guide.config import Config
from guide.redact import redact


class RedactingFilter(logging.Filter):
    """Every line leaving the handler loses URL passwords and the configured secrets."""

    def __init__(self, secrets: Sequence[str | bytes] = ()) -> None:
        super().__init__()
        self.secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message and any traceback now, redacted; never drops a record."""
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(text, self.secrets)
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


class BadRequestFilter(logging.Filter):
    """aiohttp logs a malformed or oversized request with a traceback that quotes it: one line.

    The quoted start of the request may hold a token (a working link) and anyone can send
    such requests, so the line names only the kind of problem and the status sent.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite aiohttp.server's records about unparsable requests; pass the rest."""
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.msg = "refused a malformed or oversized HTTP request: %s (status %d)"
            record.args = (type(error).__name__, error.code)
            record.exc_info = None
            record.exc_text = None
            if record.levelno > logging.INFO:
                record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def secrets_of(config: Config) -> list[str | bytes]:
    """Every secret the configuration holds, for the log filter to hide should one slip in."""
    found: list[str | bytes] = [config.link_secret, config.smtp.password, config.dkim.private_key]
    if config.database_url:
        found.append(make_url(config.database_url).password or "")
    return [secret for secret in found if secret]


def setup_logging(level: str, secrets: Sequence[str | bytes] = ()) -> None:
    """Plain lines on stderr (journald adds the time and unit), secrets and URLs redacted."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
            "filters": {
                "redact": {"()": RedactingFilter, "secrets": list(secrets)},
                "bad_request": {"()": BadRequestFilter},
            },
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "plain",
                    "stream": "ext://sys.stderr",
                    "filters": ["redact"],
                }
            },
            "root": {"handlers": ["stderr"], "level": level},
            # Library chatter at INFO would drown the service's own lines.
            "loggers": {
                "apscheduler": {"level": "WARNING"},
                "aiosqlite": {"level": "WARNING"},
                "aiohttp.access": {"level": "WARNING"},
                "aiohttp.server": {"filters": ["bad_request"]},
                "alembic": {"level": "WARNING"},
            },
        }
    )
