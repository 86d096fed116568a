"""Logging configured once, at the entry point; library code only uses getLogger(__name__)."""

from __future__ import annotations

import logging.config


def setup_logging(level: str) -> None:
    """Plain lines on stderr (journald adds the time and unit)."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "plain",
                    "stream": "ext://sys.stderr",
                }
            },
            "root": {"handlers": ["stderr"], "level": level},
            # Library chatter at INFO would drown the service's own lines.
            "loggers": {
                "apscheduler": {"level": "WARNING"},
                "aiosqlite": {"level": "WARNING"},
                "aiohttp.access": {"level": "WARNING"},
                "alembic": {"level": "WARNING"},
            },
        }
    )
