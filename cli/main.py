"""The command line: one click group with --config, and the exit status of each kind of failure."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from cli.admin import admin_group
from cli.bounces import bounces_group
from cli.context import DEFAULT_CONFIG, Invocation
from cli.db import db_group
from cli.lessons import lessons_group, send_test_command
from cli.service import serve_command, status_command, tick_command
from cli.subscribers import subscribers_group
from guide.errors import ConfigError, GuideError, LessonError
from guide.redact import redact

EXIT_FAILURE = 1
EXIT_USAGE = 2  # also configuration errors
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE, as a shell reports `… | head`
LESSONS_HINT = "The lessons are invalid; fix them first (python run.py lessons check)."


class GuideGroup(click.Group):
    """The root group: turns the errors a command may raise into a message and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the chosen command; its return value is the exit status."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            # `run.py lessons list | head`: the reader left; that is not an error worth a
            # traceback, and the interpreter must not fail again flushing at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_CLOSED_PIPE
        except ConfigError as err:
            # Found while the parts were built (a key, a state folder): the same line and
            # status as a bad config.yaml.
            click.echo(f"configuration error: {redact(str(err))}", err=True)
            return EXIT_USAGE
        except LessonError as err:
            for problem in err.problems:
                click.echo(str(problem), err=True)
            click.echo(LESSONS_HINT, err=True)
            return EXIT_FAILURE
        except GuideError as err:
            click.echo(f"error: {redact(str(err))}", err=True)
            return EXIT_FAILURE
        except OSError as err:
            # A folder that cannot be created or written (state_dir, --out, --output).
            where = f" ({err.filename})" if err.filename else ""
            click.echo(f"error: {redact(str(err.strerror or err))}{where}", err=True)
            return EXIT_FAILURE


@click.group(cls=GuideGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    # A folder or an unreadable file is reported by the configuration loader, in one line.
    type=click.Path(path_type=Path, readable=False),
    default=DEFAULT_CONFIG,
    envvar="DRG_CONFIG",
    show_default=False,
    help="configuration file (default: config.yaml beside run.py, or $DRG_CONFIG)",
)
@click.pass_context
def guide(ctx: click.Context, config_path: Path) -> None:
    """Email each subscriber one lesson a day from a YAML sequence."""
    # The file is read when the command runs, so `COMMAND --help` works with a broken config.
    ctx.obj = Invocation(config_path)


for _command in (
    lessons_group,
    send_test_command,
    serve_command,
    tick_command,
    status_command,
    db_group,
    subscribers_group,
    bounces_group,
    admin_group,
):
    guide.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; exit status 2 for usage and configuration mistakes, 1 for failures."""
    # Everything the service writes (database, outbox, secrets) holds data about people at
    # risk: private to the service user, whatever umask the shell had.
    os.umask(0o077)
    try:
        status = guide.main(
            args=list(argv) if argv is not None else None,
            prog_name="run.py",
            standalone_mode=False,
        )
    except click.ClickException as err:  # usage errors (2) and the configuration (2)
        err.show()
        return err.exit_code
    except click.Abort:  # Ctrl-C while click itself was reading or parsing
        return EXIT_INTERRUPTED
    # --help returns 0; a command returns its exit status.
    return int(status or 0)
