"""Logging configured once, at the entry point; library code only uses getLogger(__name__)."""

from __future__ import annotations

import io
import logging
import logging.config
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

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


class SchedulerOverlapFilter(logging.Filter):
    """Drops APScheduler's "skipped: maximum number of running instances" warning.

    A pass that outlasts dispatch.interval_seconds (a backlog under a rate limit) made it log
    that at WARNING every interval; the service says it once per pass at INFO instead.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the overlap warning; every other record passes."""
        return "maximum number of running instances reached" not in str(record.msg)


# syslog priorities (sd-daemon(3): "<3>" is SD_ERR) by logging level.
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def priority_of(levelno: int) -> int:
    """The syslog priority journald files a record of this logging level under."""
    return next((prio for level, prio in _PRIORITIES if levelno >= level), 7)


class JournalFormatter(logging.Formatter):
    """Each line prefixed `<N>`, its syslog priority, which journald takes instead of info.

    Every line of a record gets it: journald files each line as an entry of its own, so the
    lines of a traceback would otherwise land at info priority.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The plain format, with the priority prefix on every line."""
        prefix = f"<{priority_of(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


def to_journal(environ: Mapping[str, str], stream: TextIO) -> bool:
    """Whether `stream` is the journal's: $JOURNAL_STREAM names its device and inode.

    systemd sets $JOURNAL_STREAM to DEVICE:INODE of the stream it connected; a child that
    inherited the variable but writes elsewhere (a pipe, a file, a terminal) must not match.
    """
    value = environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return False  # no file descriptor behind it (a test's StringIO): not the journal
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def secrets_of(config: Config) -> list[str | bytes]:
    """Every secret the configuration holds, for the log filter to hide should one slip in."""
    found: list[str | bytes] = [
        config.link_secret,
        config.smtp.password,
        config.dkim.private_key,
        config.admin.password_hash,
        config.bounces.imap.password,
    ]
    if config.database_url:
        found.append(make_url(config.database_url).password or "")
    return [secret for secret in found if secret]


def setup_logging(level: str, secrets: Sequence[str | bytes] = ()) -> None:
    """Plain lines on stderr (journald adds the time and unit), secrets and URLs redacted.

    Under systemd, when stderr is the journal's stream, each line starts with its syslog
    priority (`<3>` for ERROR), so `journalctl -p err` finds the errors.
    """
    plain = "%(levelname)s %(name)s: %(message)s"
    formatter: dict[str, Any] = {"format": plain}
    if to_journal(os.environ, sys.stderr):
        formatter = {"()": JournalFormatter, "fmt": plain}
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": formatter},
            "filters": {
                "redact": {"()": RedactingFilter, "secrets": list(secrets)},
                "bad_request": {"()": BadRequestFilter},
                "overlap": {"()": SchedulerOverlapFilter},
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
                "apscheduler.scheduler": {"filters": ["overlap"]},
                "aiosqlite": {"level": "WARNING"},
                "aiohttp.access": {"level": "WARNING"},
                "aiohttp.server": {"filters": ["bad_request"]},
                "alembic": {"level": "WARNING"},
            },
        }
    )
