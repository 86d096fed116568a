"""`admin hash-password`: the admin password's hash, for $DRG_ADMIN_PASSWORD_HASH or a file."""

from __future__ import annotations

import getpass
import sys
from typing import TextIO

import click

from guide.passwords import hash_password, password_problem


@click.group("admin")
def admin_group() -> None:
    """The admin pages' login."""


@admin_group.command("hash-password")
def hash_password_command() -> int:
    """Print the hash of a password read without echo (or one line of stdin when piped)."""
    return make_hash(sys.stdin, sys.stdout, sys.stderr)


def make_hash(stdin: TextIO, out: TextIO, err: TextIO) -> int:
    """Read the password (twice at a terminal), check it, print its hash; 2 when refused."""
    if stdin.isatty():
        password = getpass.getpass("Admin password: ", stream=err)
        if getpass.getpass("Again: ", stream=err) != password:
            print("error: the two passwords differ", file=err)
            return 2
    else:
        # Piped: the first line, without its line break (a password never holds one).
        password = stdin.readline().rstrip("\r\n")
    problem = password_problem(password)
    if problem:
        print(f"error: the password {problem}", file=err)
        return 2
    print(hash_password(password), file=out)
    print(
        "Put this in $DRG_ADMIN_PASSWORD_HASH, the file admin.password_hash_file names, or "
        "the systemd credential admin_password_hash; never in config.yaml.",
        file=err,
    )
    return 0
