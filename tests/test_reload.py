"""SIGHUP: serve reads config.yaml, lessons and templates again; live keys apply, a bad edit not."""

from __future__ import annotations

import shutil
import signal
from email import policy
from email.parser import BytesParser
from pathlib import Path

import aiohttp
import pytest
from jinja2 import Environment, FileSystemLoader, TemplateSyntaxError

from guide.config import load_config
from guide.errors import LessonError, Problem
from tests.harness import LESSONS, LINK_SECRET
from tests.sdnotify import (
    NotifySocket,
    Serve,
    add_subscribers,
    make_due,
    outbox,
    run_env,
    start_serve,
    write_config,
)
from tests.test_serve import free_port
from wiring.reload import changed_keys, check_templates, describe, is_live, merged


def test_changed_keys_are_named_as_in_config_yaml(tmp_path: Path) -> None:
    (tmp_path / "other-lessons").mkdir()
    before = tmp_path / "before.yaml"
    after = tmp_path / "after.yaml"
    before.write_text("sender:\n  discreet_name: Daily Notes\n")
    after.write_text(
        "sender:\n  discreet_name: Morning Pages\nlessons:\n  dir: other-lessons\n"
        "dispatch:\n  rate_per_hour: 600\n  retry_lifetime_days: 2\nweb:\n  port: 8181\n"
        "footer:\n  emergency: Call your local emergency number if you are in danger now.\n"
        "log_level: WARNING\n"
    )
    env = {"DRG_LINK_SECRET": LINK_SECRET}
    old, new = load_config(before, env), load_config(after, env)
    keys = changed_keys(old, new)
    assert sorted(keys) == [
        "dispatch.rate_per_hour",
        "dispatch.retry_lifetime_days",
        "footer.emergency",
        "lessons.dir",
        "log_level",
        "sender.discreet_name",
        "web.port",
    ]
    assert [key for key in keys if not is_live(key)] == [
        "lessons.dir",
        "dispatch.retry_lifetime_days",
        "web.port",
    ]
    running = merged(old, new)
    assert running.sender.discreet_name == "Morning Pages"
    assert running.dispatch.rate_per_hour == 600
    assert running.footer == new.footer and running.log_level == "WARNING"
    # What needs a restart keeps its running value.
    assert running.web.port == old.web.port and running.lessons_dir == old.lessons_dir
    assert running.dispatch.retry_lifetime == old.dispatch.retry_lifetime
    assert changed_keys(old, old) == []


def test_a_broken_template_is_found_before_anything_is_swapped(tmp_path: Path) -> None:
    (tmp_path / "lesson.txt").write_text("Hello {{ name }}\n")
    (tmp_path / "_footer.txt").write_text("line one\n{% if stop %}\nno endif\n")
    env = Environment(loader=FileSystemLoader(tmp_path), autoescape=True)
    with pytest.raises(TemplateSyntaxError) as caught:
        check_templates(env)
    assert describe(caught.value).startswith(f"{tmp_path / '_footer.txt'}:")
    assert "\n" not in describe(caught.value)


def test_a_failed_reload_is_described_in_one_line() -> None:
    problems = [Problem("lessons/a.yaml", 3, "title", "is required")] * 3
    assert describe(LessonError(problems)) == "lessons/a.yaml:3: title: is required (and 2 more)"
    missing = FileNotFoundError(2, "No such file or directory", "/etc/drg/config.yaml")
    assert describe(missing) == "/etc/drg/config.yaml: No such file or directory"


DISCLAIMER = "Educational reading only, not clinical care."


def text_of(message: Path) -> str:
    parsed = BytesParser(policy=policy.default).parsebytes(message.read_bytes())
    body = parsed.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def sender_name(message: Path) -> str:
    parsed = BytesParser(policy=policy.default).parsebytes(message.read_bytes())
    return str(parsed["From"].addresses[0].display_name)


async def sent_one(listener: NotifySocket) -> None:
    """Wait for the STATUS= of a pass that sent one message."""
    while "claimed 1: sent 1" not in (await listener.next(30)).get("STATUS", ""):
        pass


async def reload(serve: Serve, listener: NotifySocket) -> None:
    """kill -HUP, as ExecReload= does; wait for RELOADING=1, then READY=1."""
    serve.process.send_signal(signal.SIGHUP)
    await listener.until("RELOADING")
    await listener.until("READY")


async def test_sighup_swaps_live_keys_and_keeps_the_last_good_version(tmp_path: Path) -> None:
    port = free_port()
    good = "sender:\n  discreet_name: Daily Notes\n"
    config = write_config(tmp_path, port, good)
    add_subscribers(
        config,
        [f"{who}@example.org,,Europe/Berlin,08:00,true,no-contact" for who in ("a", "b", "c")],
    )
    listener = NotifySocket(str(tmp_path / "notify"))
    serve = await start_serve(config, run_env(NOTIFY_SOCKET=listener.address))
    url = f"http://127.0.0.1:{port}"
    try:
        await listener.until("READY", seconds=60)
        async with aiohttp.ClientSession() as http, http.get(f"{url}/subscribe") as page:
            assert "<title>Daily Notes</title>" in await page.text()
        make_due(config, "a@example.org")
        await sent_one(listener)

        # Live keys change; a port cannot while the service listens on it.
        live = "sender:\n  discreet_name: Morning Pages\n"
        write_config(tmp_path, free_port(), live, dispatch="  rate_per_second: 50\n")
        await reload(serve, listener)
        await serve.line("needs a restart: web.port")
        line = await serve.line("reloaded ")
        assert "changed: sender.discreet_name, dispatch.rate_per_second" in line
        # The pages took the new context too (and still listen on the old port).
        async with aiohttp.ClientSession() as http, http.get(f"{url}/subscribe") as page:
            assert "<title>Morning Pages</title>" in await page.text()
        make_due(config, "b@example.org")
        await sent_one(listener)

        # A bad edit: the last good configuration stays, and one ERROR line says why.
        write_config(tmp_path, port, live, dispatch="  rate_per_hour: -1\n")
        await reload(serve, listener)
        error = await serve.line("reload failed")
        assert error.startswith("ERROR ")
        assert f"{config}:" in error and "dispatch.rate_per_hour" in error
        quiet_from = len(serve.seen)

        # The log level and the footer are live too: from WARNING on, the INFO lines stop.
        footer = f"footer:\n  disclaimer: {DISCLAIMER}\n"
        write_config(tmp_path, port, live + footer + "log_level: WARNING\n")
        await reload(serve, listener)
        make_due(config, "c@example.org")
        await sent_one(listener)
    finally:
        serve.process.send_signal(signal.SIGTERM)
    assert await serve.stop() == 0  # SIGTERM after reloads: still a clean stop
    listener.close()

    first, second, third = outbox(config)
    assert sender_name(first) == "Daily Notes"
    assert sender_name(second) == "Morning Pages"
    assert sender_name(third) == "Morning Pages"  # the bad edit changed nothing
    assert DISCLAIMER not in text_of(second) and DISCLAIMER in text_of(third)
    assert [line for line in serve.seen if line.startswith("ERROR")] == [error]
    assert "Traceback" not in serve.log
    after = serve.seen[quiet_from:]
    assert not [line for line in after if line.startswith("INFO")], after
    assert any(line.startswith("INFO") for line in serve.seen[:quiet_from])


async def test_a_broken_lesson_edit_is_refused_at_sighup(tmp_path: Path) -> None:
    lessons = tmp_path / "lessons"
    shutil.copytree(LESSONS, lessons)
    config = write_config(tmp_path, free_port(), lessons=lessons)
    listener = NotifySocket(str(tmp_path / "notify"))
    serve = await start_serve(config, run_env(NOTIFY_SOCKET=listener.address))
    try:
        await listener.until("READY", seconds=60)
        day = lessons / "no-contact" / "grief-and-the-bond.yaml"
        day.write_text(day.read_text() + "\nunknown_field: yes\n")
        await reload(serve, listener)
        error = await serve.line("reload failed")
        assert error.startswith("ERROR ") and f"{day.name}:" in error
    finally:
        serve.process.send_signal(signal.SIGTERM)
    assert await serve.stop() == 0
    listener.close()
    assert "Traceback" not in serve.log
