"""Daily Recovery Guide: the one entry point (serve, tick, lessons, subscribers, status, db)."""

from __future__ import annotations

import sys

from cli.main import main

__all__ = ["main"]  # the console script in pyproject.toml is run:main

if __name__ == "__main__":
    sys.exit(main())
