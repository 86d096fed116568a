"""Daily Recovery Guide: the one entry point (serve, tick, lessons, subscribers, status, db)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from guide.config import Config, load_config
from guide.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parent / "config.yaml"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="run.py", description="Email each subscriber one lesson a day from a YAML sequence."
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=Path(os.environ.get("DRG_CONFIG", DEFAULT_CONFIG)),
        help="configuration file (default: config.yaml beside run.py, or $DRG_CONFIG)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    lessons = commands.add_parser("lessons", help="check, list and preview lessons")
    lesson_commands = lessons.add_subparsers(
        dest="lessons_command", required=True, metavar="ACTION"
    )
    check = lesson_commands.add_parser("check", help="validate every lesson file")
    check.add_argument("path", nargs="?", type=Path, help="lessons folder (default: lessons.dir)")
    listing = lesson_commands.add_parser("list", help="print the sequence as a table")
    listing.add_argument("--sequence", help="sequence id (default: lessons.default_sequence)")
    preview = lesson_commands.add_parser("preview", help="write the HTML and text of one day")
    preview.add_argument("day", type=int)
    preview.add_argument("--sequence")
    preview.add_argument(
        "--out", type=Path, default=Path("preview"), help="folder (default: preview)"
    )
    preview.add_argument("--discreet", action="store_true", help="render the discreet variant")
    preview.add_argument("--open", action="store_true", help="open the HTML in a browser")

    send = commands.add_parser("send-test", help="send one lesson to an address")
    send.add_argument("day", type=int)
    send.add_argument("--to", required=True, help="recipient address")
    send.add_argument("--name", default="", help="first name for the greeting")
    send.add_argument("--sequence")
    send.add_argument("--discreet", action="store_true")

    from scheduler.commands import add_service_commands

    add_service_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; exit status 2 for configuration mistakes, 1 for failures."""
    args = build_parser().parse_args(argv)
    # Everything the service writes (database, outbox, secrets) holds data about people at
    # risk: private to the service user, whatever umask the shell had.
    os.umask(0o077)
    try:
        config = load_config(
            args.config if args.config.exists() or args.config != DEFAULT_CONFIG else None
        )
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return 2
    from scheduler.logs import setup_logging

    setup_logging(config.log_level)
    try:
        return run_command(args, config)
    except BrokenPipeError:
        # `run.py lessons list | head`: the reader left; that is not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as err:
        # A folder that cannot be created or written (state_dir, --out, --output).
        where = f" ({err.filename})" if err.filename else ""
        print(f"error: {err.strerror or err}{where}", file=sys.stderr)
        return 1


def run_command(args: argparse.Namespace, config: Config) -> int:
    """Dispatch a parsed command."""
    from scheduler import lesson_commands as lc

    if args.command == "lessons":
        if args.lessons_command == "check":
            return lc.lessons_check(args.path or config.lessons_dir, sys.stdout)
        sequence = lc.pick_sequence(
            config.lessons_dir, args.sequence or config.default_sequence, sys.stderr
        )
        if sequence is None:
            return 1
        if args.lessons_command == "list":
            return lc.lessons_list(sequence, sys.stdout)
        return lc.lessons_preview(
            config,
            sequence,
            args.day,
            args.out,
            discreet=args.discreet,
            open_browser=args.open,
            out=sys.stdout,
        )
    if args.command == "send-test":
        sequence = lc.pick_sequence(
            config.lessons_dir, args.sequence or config.default_sequence, sys.stderr
        )
        if sequence is None:
            return 1
        return lc.send_test(
            config,
            sequence,
            args.day,
            args.to,
            name=args.name,
            discreet=args.discreet,
            out=sys.stdout,
        )
    from scheduler.commands import run_service_command

    return run_service_command(args, config)


if __name__ == "__main__":
    sys.exit(main())
