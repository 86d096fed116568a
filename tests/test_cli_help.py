"""Every command and subcommand says what it does in --help, and so does each of its options."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest

from cli.main import guide, main


def commands(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every command under `command`, groups included."""
    yield path
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from commands(sub, (*path, name))


def command_at(path: tuple[str, ...]) -> click.Command:
    found: click.Command = guide
    for name in path:
        assert isinstance(found, click.Group)
        found = found.commands[name]
    return found


ALL = list(commands(guide))


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(path) for path in ALL}
    # The ones operators reach for; a group that stopped being walked would drop them.
    assert {"serve", "status", "tick", "db backup", "subscribers add", "lessons check"} <= names
    assert len(ALL) >= 30


@pytest.mark.parametrize("path", ALL, ids=lambda path: " ".join(path) or "run.py")
def test_help_describes_the_command_and_every_option(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    command = command_at(path)
    assert main([*path, "--help"]) == 0
    shown = capsys.readouterr().out
    flat = " ".join(shown.split())  # click wraps long lines
    assert shown.startswith(f"Usage: run.py {' '.join(path)}".rstrip())
    summary = command.get_short_help_str(limit=300)
    assert len(summary) >= 15, f"{path}: no help line"
    described = " ".join((command.help or "").split("\b")[0].split())
    assert len(described) >= 15 and described[:40] in flat, shown
    for option in command.params:
        if not isinstance(option, click.Option) or option.hidden:
            continue
        assert option.help, f"{' '.join(path)} {option.opts[0]}: no description"
        assert " ".join(option.help.split())[:30] in flat, (option.opts, shown)
