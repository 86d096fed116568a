"""`lessons serve`: every day as the email it will be, a saved edit served at once, a broken one
shown as `lessons check` prints it, and nothing written or sent."""

from __future__ import annotations

import asyncio
import html
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

from cli.lesson_preview import Preview
from cli.lesson_server import allowed_hosts, create_app
from guide.clock import system_clock
from guide.tokens import LinkSigner
from tests.harness import REPO, clean_env, config_for
from tests.preview_server import (
    DAY,
    EDITED,
    command,
    copy_lessons,
    edit,
    poll,
    preview_server,
)
from wiring.parts import make_composer


def tree(folder: Path) -> dict[str, int]:
    """Every file under `folder` and its modification time."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


async def lessons_check(folder: Path) -> list[str]:
    """What `run.py lessons check` prints in `folder`."""
    check = await asyncio.create_subprocess_exec(
        *command(folder, "lessons", "check"),
        cwd=folder,
        env=clean_env(),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await check.communicate()
    assert check.returncode == 1
    return out.decode().splitlines()


async def test_a_saved_edit_is_served_and_a_broken_one_shows_the_checkers_lines(
    tmp_path: Path,
) -> None:
    copy_lessons(tmp_path)
    lesson = tmp_path / EDITED
    async with preview_server(tmp_path) as server:
        before = tree(tmp_path)
        status, index = await server.get("/")
        assert status == 200
        assert "All 44 lessons pass" in index
        assert (
            'href="/no-contact/30/discreet"' in index and 'href="/low-contact/14/normal"' in index
        )
        status, page = await server.get(DAY)
        assert status == 200 and "Day 3 of 30" in page
        assert "What the month ahead will cover" in page  # the title, in the HTML and text
        _, discreet = await server.get(DAY.replace("normal", "discreet"))
        assert "Daily Notes &lt;guide@localhost&gt;" in discreet  # the neutral sender name
        status, email = await server.get(DAY + "/email.html")
        assert status == 200 and "<html" in email and "What the month ahead" in email

        # A save: the page, its text part and the email's HTML serve the new title.
        edit(lesson, r"^title: .*$", "title: A calm map of the month")
        took = await poll(lambda: server.text(DAY), "A calm map of the month")
        await poll(lambda: server.text(DAY + "/email.html"), "A calm map of the month")
        print(f"edit served after {took:.2f} s")

        # A broken save: the page shows what `lessons check` prints, instead of the email.
        edit(lesson, r"^phase: .*$", "phase: not-a-phase")
        await poll(lambda: server.text(DAY), "These files would be refused")
        _, page = await server.get(DAY)
        shown = html.unescape(page)
        checked = await lessons_check(tmp_path)
        assert checked[0].startswith(f"{EDITED}:5: phase: unknown phase 'not-a-phase'")
        assert all(line in shown for line in checked), (checked, shown)
        assert "Subject" not in shown and "email.html" not in shown  # no email beside it
        status, _ = await server.get(DAY + "/email.html")
        assert status == 409
        _, index = await server.get("/")
        assert checked[0] in html.unescape(index) and "last good version" in index

        # Fixed: the email is back.
        edit(lesson, r"^phase: .*$", "phase: going-no-contact")
        await poll(lambda: server.text(DAY), "email.html")
        assert "These files would be refused" not in await server.text(DAY)

        # A page from another Host name (a rebinding attack's) is refused.
        async with aiohttp.ClientSession() as http:
            # The pages run their own script only; the email may not run any, nor load anything.
            async with http.get(server.base + DAY) as page_response:
                assert "script-src 'self';" in page_response.headers["Content-Security-Policy"]
                assert page_response.headers["Cache-Control"] == "no-store"
            async with http.get(server.base + DAY + "/email.html") as email_response:
                policy = email_response.headers["Content-Security-Policy"]
                assert policy == "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
            headers = {"Host": "attacker.example"}
            async with http.get(server.base + DAY, headers=headers) as refused:
                assert refused.status == 421
        assert await server.stop() == 0
    output = "".join(server.output)
    assert "Traceback" not in output, output
    assert f"changed: {EDITED}: {checked[-1]}" in output
    # It writes nothing: no state folder, no preview files, only the edits above changed.
    after = tree(tmp_path)
    assert not (tmp_path / "state").exists() and not (tmp_path / "preview").exists()
    assert set(after) == set(before)
    assert [name for name in after if after[name] != before[name]] == [str(EDITED)]


@asynccontextmanager
async def in_process(
    tmp_path: Path, templates: Path, only: str | None = None
) -> AsyncIterator[tuple[str, list[str]]]:
    """The preview app over tmp_path's lessons and `templates`: its base URL and report lines."""
    config = config_for(tmp_path, lessons=tmp_path / "lessons")
    signer = LinkSigner("preview-only", config.web.public_url, config.link_lifetime)
    composer = make_composer(config, signer)
    preview = Preview(config, config.lessons_dir, templates, composer, system_clock)
    lines: list[str] = []
    runner = web.AppRunner(create_app(preview, only=only, report=lines.append))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", lines
    finally:
        await runner.cleanup()


async def fetch(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as response:
        return html.unescape(await response.text())


async def test_an_edited_template_is_pushed_and_a_broken_one_named_by_file_and_line(
    tmp_path: Path,
) -> None:
    copy_lessons(tmp_path)
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates" / "email", templates / "email")
    text = templates / "email" / "lesson.txt"
    async with in_process(tmp_path, templates) as (base, lines), aiohttp.ClientSession() as http:
        async with http.get(f"{base}/events") as stream:
            assert stream.content_type == "text/event-stream"
            assert await stream.content.readline() == b"retry: 500\n"
            await stream.content.readline()
            first = (await stream.content.readline()).decode()
            assert first.startswith("data: ")
            assert f'data-version="{first[6:].strip()}"' in await fetch(http, base + DAY)

            # A saved template: the stream names a new version at once, and the page has it.
            text.write_text(text.read_text() + "A line from the edited template.\n")
            await stream.content.readline()
            pushed = (await asyncio.wait_for(stream.content.readline(), 5)).decode()
            assert pushed.startswith("data: ") and pushed != first
            page = await fetch(http, base + DAY)
            assert f'data-version="{pushed[6:].strip()}"' in page
            assert "A line from the edited template." in page

        # A template that does not compile is named by its file and line, in place of the email.
        html_file = templates / "email" / "lesson.html"
        source = html_file.read_text().splitlines(keepends=True)
        html_file.write_text("".join([*source[:3], "{% if %}\n", *source[3:]]))
        await poll(lambda: fetch(http, base + DAY), "These files would be refused")
        page = await fetch(http, base + DAY)
        assert f"{html_file}:4: " in page and "1 problem(s) found." in page
        assert "A line from the edited template." not in page
        html_file.write_text("".join(source))
        await poll(lambda: fetch(http, base + DAY), "A line from the edited template.")
    assert any(line.startswith(f"changed: {html_file}: 1 problem(s)") for line in lines), lines


async def test_sequence_option_shows_one_sequence_and_refuses_an_unknown_one(
    tmp_path: Path,
) -> None:
    copy_lessons(tmp_path)
    templates = REPO / "templates"
    shown = in_process(tmp_path, templates, only="low-contact")
    async with shown as (base, _), aiohttp.ClientSession() as http:
        index = await fetch(http, base + "/")
        assert "/low-contact/14/discreet" in index and "/no-contact/" not in index
        async with http.get(base + DAY) as other:
            assert other.status == 404 and "There is no such day now." in await other.text()
    unknown = await asyncio.create_subprocess_exec(
        *command(tmp_path, "lessons", "serve", "--port", "0", "--sequence", "nope"),
        cwd=tmp_path,
        env=clean_env(),
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(unknown.communicate(), 30)
    assert unknown.returncode == 1
    assert err.decode() == "no sequence 'nope' (known: low-contact, no-contact)\n"


def test_only_loopback_names_are_answered_on_a_loopback_address() -> None:
    assert allowed_hosts("127.0.0.1", 8090) == {
        "127.0.0.1:8090",
        "localhost:8090",
        "[::1]:8090",
    }
    assert "[::1]:8090" in allowed_hosts("::1", 8090)
    assert allowed_hosts("192.0.2.10", 8090) == set()  # bound wider on purpose: any name
