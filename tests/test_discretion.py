"""Discreet mode names no topic where a glance can land: headers, previews, footer, links, tabs.

Every lesson of every sequence, the closing email and the confirmation are rendered for a
stored discreet subscriber, and none of a list of topic words (each lesson's title words,
phase names, content notes and a few words that say what the guide is about) may appear in
From, Subject, List-Id, the preheader, the first 300 characters of the text part, the footer,
any link (its signed token decoded too) or the title of the read-online page.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from delivery.transports import MemoryTransport
from guide.lessons import Lesson, Sequence
from tests.harness import LINK_SECRET, Clock, config_for, make_parts
from tests.messages import START, Built, build_all, urls
from web.app import create_app
from wiring import Parts, web_context

# What the guide is about, whichever lesson this is (prefixes: "narcissist" finds
# "narcissistic" too).
GLOBAL_WORDS = (
    "abuse",
    "abusive",
    "narcissis",
    "hotline",
    "violence",
    "domestic",
    "recovery",
    "survivor",
)
# Words of more than four letters in titles and notes that say nothing about the topic.
_COMMON_WORDS = (
    "about after again ahead appear before being between bigger briefly bring build chance "
    "change changes comes coming could cover example extra fully getting going include "
    "includes including keeping keeps lesson looking meant mentions month names needs often "
    "people person possible short small someone sounds still takes talks their there things "
    "through weeks where within words working yourself "
    # The neutral label of a crisis line in discreet mode, as issue 10 words it, and the
    # emergency sentence any newsletter's footer could carry ("In an emergency, call 911").
    "support emergency"
)
COMMON = frozenset(_COMMON_WORDS.split())
PREVIEW = 300  # characters of the text part a preview can show
Client = TestClient[web.Request, web.Application]


def words_of(text: str) -> set[str]:
    """The words of `text` longer than four letters that are not COMMON."""
    return {w for w in re.findall(r"[a-z']+", text.lower()) if len(w) > 4 and w not in COMMON}


def topic_words(sequences: Iterable[Sequence], lesson: Lesson | None) -> set[str]:
    """Every word that would tell an onlooker what this email is about."""
    found = set(GLOBAL_WORDS)
    for sequence in sequences:
        for phase in sequence.phases:
            found |= words_of(phase.title) | words_of(phase.id.replace("-", " "))
        found |= words_of(sequence.title)
    if lesson is not None:
        found |= words_of(lesson.title) | words_of(lesson.content_note or "")
    return found


def leaks(where: str, text: str, words: set[str], note: str = "") -> list[str]:
    """Each topic word (or the content note itself) found in `text`, as a problem line."""
    flat = " ".join(re.sub(r"[-_./]+", " ", text.lower()).split())
    problems = [f"{where}: {word!r}" for word in sorted(words) if re.search(rf"\b{word}", flat)]
    if note and " ".join(note.lower().split()) in flat:
        problems.append(f"{where}: the content note")
    return problems


def preheader(page: str) -> str:
    """The hidden preview line of an HTML part, without its invisible filler."""
    match = re.search(r'<div style="display:none[^"]*">(.*?)</div>', page, flags=re.S)
    return html.unescape(match.group(1).split("&#847;", 1)[0]) if match else ""


def footer_text(message: Built) -> str:
    """The footer of both parts: the text after '-- ', the HTML from the row of its links."""
    text = message.text.split("\n-- \n", 1)[1]
    # The stop link is in every footer and nowhere else (a lesson body can name other URLs).
    [stop] = {url for url in urls(text) if "/unsubscribe/" in url}
    page = message.html
    row = page[page.rindex("<tr", 0, page.index(html.escape(stop))) :]
    return text + "\n" + html.unescape(re.sub(r"<[^>]+>", " ", row))


def decoded_tokens(text: str) -> list[str]:
    """The payload of every signed token in the links of `text`, as JSON text."""
    found = []
    for url in urls(text):
        token = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
        if token.count(".") == 2:
            data = token.split(".")[0]
            found.append(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)).decode())
    return found


def discretion_problems(message: Built, sequences: list[Sequence]) -> list[str]:
    """Everything a glance at this discreet email could learn, as problem lines."""
    lesson = message.lesson
    words = topic_words(sequences, lesson)
    note = lesson.content_note if lesson else ""
    parsed = message.message
    text = message.text
    problems: list[str] = []
    for header in ("From", "Subject", "List-Id"):
        problems += leaks(header, str(parsed[header]), words, note or "")
    problems += leaks("preheader", preheader(message.html), words, note or "")
    # A preview may keep the line breaks or fold them into spaces: both are held to it.
    problems += leaks("text preview", text[:PREVIEW], words, note or "")
    problems += leaks("text preview", " ".join(text.split())[:PREVIEW], words, note or "")
    for url in urls(text) + re.findall(r'href="([^"]+)"', message.html):
        problems += leaks(f"link {url}", url, words, note or "")
    for payload in decoded_tokens(text):
        problems += leaks(f"token payload {payload}", payload, words, note or "")
    return [f"{message.label}: {problem}" for problem in problems]


def footer_problems(message: Built, sequences: list[Sequence]) -> list[str]:
    """Topic words in the footer of this discreet email, as problem lines."""
    lesson = message.lesson
    words = topic_words(sequences, lesson)
    note = lesson.content_note if lesson else ""
    return [
        f"{message.label}: {problem}"
        for problem in leaks("footer", footer_text(message), words, note or "")
    ]


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[Parts]:
    built = await make_parts(config_for(tmp_path), Clock(START), MemoryTransport())
    try:
        yield built
    finally:
        await built.close()


@pytest.fixture
async def client(parts: Parts) -> AsyncIterator[Client]:
    client = TestClient(TestServer(create_app(web_context(parts))))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


def test_the_check_finds_a_leak() -> None:
    sequences: list[Sequence] = []
    words = topic_words(sequences, None)
    assert leaks("x", "National Domestic Violence Hotline", words)
    assert leaks("x", "https://guide.example/lesson/narcissistic-rage", words)
    assert not leaks("x", "Your note for today. Day 3 of 30.", words)


async def test_discreet_emails_name_no_topic(parts: Parts) -> None:
    sequences = list(parts.library.current().values())
    discreet = [b for b in await build_all(parts) if b.discreet]
    assert {b.kind for b in discreet} == {"lesson", "closing", "confirm", "send-test"}
    assert sum(b.kind == "lesson" for b in discreet) == sum(len(s) for s in sequences)
    problems = [p for message in discreet for p in discretion_problems(message, sequences)]
    problems += [f"{b.label}: no preheader" for b in discreet if not preheader(b.html)]
    assert not problems, f"{len(problems)} leaks:\n" + "\n".join(problems[:60])


async def test_discreet_footers_name_no_topic(parts: Parts) -> None:
    sequences = list(parts.library.current().values())
    discreet = [b for b in await build_all(parts) if b.discreet]
    problems = [p for message in discreet for p in footer_problems(message, sequences)]
    assert not problems, f"{len(problems)} leaks:\n" + "\n".join(problems[:60])


async def test_normal_emails_do_name_the_topic(parts: Parts) -> None:
    # The check above must be able to fail: the normal variant says what the lesson is.
    sequences = list(parts.library.current().values())
    normal = [b for b in await build_all(parts) if b.kind == "lesson" and not b.discreet]
    for message in normal:
        assert discretion_problems(message, sequences), message.label
        assert footer_text(message).startswith("Pause or change these emails")


async def test_read_online_pages_have_the_site_title(parts: Parts, client: Client) -> None:
    sequences = list(parts.library.current().values())
    site_title = parts.config.sender.discreet_name
    lessons = [b for b in await build_all(parts) if b.kind == "lesson"]
    for message in lessons:
        [online] = [url for url in urls(message.text) if "/lesson/" in url]
        resp = await client.get(urlsplit(online).path)
        assert resp.status == 200, message.label
        page = await resp.text()
        [title] = re.findall(r"<title>(.*?)</title>", page, flags=re.S)
        # In both modes: the tab title lands in browser history.
        assert title == site_title, f"{message.label}: {title!r}"
        assert not leaks("title", title, topic_words(sequences, message.lesson))


async def test_lesson_links_carry_no_lesson_id(parts: Parts, client: Client) -> None:
    lessons = [b for b in await build_all(parts) if b.kind == "lesson"]
    refs = set()
    for message in lessons:
        lesson = message.lesson
        assert lesson is not None
        [payload] = [p for p in decoded_tokens(message.text) if p.startswith("[")]
        who, ref = json.loads(payload)
        assert isinstance(who, int) and isinstance(ref, str)
        assert lesson.id not in payload and ref == parts.composer.signer.lesson_ref(lesson.id)
        refs.add((message.sequence.id, ref))
    # One ref per lesson, none shared within a sequence.
    assert len(refs) == len({(b.sequence.id, b.lesson.id) for b in lessons if b.lesson})


async def test_links_sent_with_the_lesson_id_keep_working(parts: Parts, client: Client) -> None:
    # Links emailed before refs carried the id itself; they work until they expire.
    lessons = [b for b in await build_all(parts) if b.kind == "lesson" and not b.discreet]
    message = lessons[3]
    assert message.lesson is not None
    [online] = [url for url in urls(message.text) if "/lesson/" in url]
    [payload] = [p for p in decoded_tokens(message.text) if p.startswith("[")]
    who = json.loads(payload)[0]
    signer = parts.composer.signer
    assert signer.secret == LINK_SECRET
    legacy = signer.token("lesson", [who, message.lesson.id], START)
    for path in (urlsplit(online).path, f"/lesson/{legacy}"):
        resp = await client.get(path)
        assert resp.status == 200
        assert f">{html.escape(message.lesson.title)}</h1>" in await resp.text()
    unknown = signer.token("lesson", [who, "AAAAAAAAAAAA"], START)
    assert (await client.get(f"/lesson/{unknown}")).status == 410
