"""Daily Recovery Guide: the one entry point (serve, tick, lessons, subscribers, status, db)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cli.main import main as cli_main
from guide import eventloop


def main(argv: Sequence[str] | None = None) -> int:
    """The console script (pyproject.toml: run:main): every command on the service's loop."""
    eventloop.install()
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
