"""Assemble lesson emails as bytes: render each lesson once, fill only personal parts per send."""

from __future__ import annotations

import binascii
import hashlib
import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from delivery.headers import check_header_text, clean_header_text, encode_address, encode_text
from guide.config import Config
from guide.lessons import Lesson, Sequence
from guide.render import markdown_to_html, markdown_to_text, render_template_body

CRLF = b"\r\n"
# The parts of an email that differ per subscriber. Everything else is rendered once per lesson.
PERSONAL = ("greeting", "manage_url", "unsubscribe_url", "online_url", "action_url")
_MARK = re.compile(r"\[\[drg:(\w+)\]\]")


def _marker(name: str) -> Markup:
    # The name is one of PERSONAL, never user input.
    return Markup(f"[[drg:{name}]]")  # noqa: S704


@dataclass(frozen=True)
class Recipient:
    """Who one message goes to, and how they asked to receive it."""

    email: str
    name: str = ""
    discreet: bool = False


@dataclass(frozen=True)
class Personal:
    """The per-subscriber values of one message."""

    message_id: str
    unsubscribe_url: str
    manage_url: str = ""
    online_url: str = ""
    action_url: str = ""  # the confirmation link of a double opt-in email


def _qp_line(line: str) -> bytes:
    # binascii.b2a_qp is C: one call per line keeps soft breaks inside the line, so
    # pre-encoded lines and per-message lines can simply be joined with CRLF.
    return binascii.b2a_qp(line.encode("utf-8"), istext=True).replace(b"\n", CRLF)


class _Part:
    """One text part, pre-encoded as quoted-printable except for lines with personal markers."""

    def __init__(self, rendered: str, *, escape: bool) -> None:
        self.escape = escape
        # Encoded runs of lines without markers, and each marked line split at its markers
        # (re.split: text, marker name, text, ...), so a message only joins and encodes.
        self.chunks: list[bytes | list[str]] = []
        static: list[bytes] = []
        for line in rendered.replace("\r\n", "\n").split("\n"):
            if _MARK.search(line):
                if static:
                    self.chunks.append(CRLF.join(static) + CRLF)
                    static = []
                self.chunks.append(_MARK.split(line))
            else:
                static.append(_qp_line(line))
        if static:
            self.chunks.append(CRLF.join(static) + CRLF)

    def encode(self, values: Mapping[str, str]) -> bytes:
        """The part for one recipient: `values` fill the markers, then quoted-printable."""
        if self.escape:
            values = {name: html.escape(value) for name, value in values.items()}
        out: list[bytes] = []
        for chunk in self.chunks:
            if isinstance(chunk, bytes):
                out.append(chunk)
            else:
                # Odd places hold marker names, even places the text between them.
                line = "".join(values[p] if i % 2 else p for i, p in enumerate(chunk))
                out.append(_qp_line(line) + CRLF)
        return b"".join(out)


@dataclass(frozen=True)
class _Variant:
    head: bytes  # From, Subject, List-Id and the constant headers, ready to send
    text: _Part
    html: _Part
    page: str  # the HTML with personal markers, for reading online and previews
    plain: str  # the text with personal markers


@dataclass(frozen=True)
class PreparedMessage:
    """A lesson (or notice) rendered once, in normal and discreet form."""

    key: str
    boundary: str
    normal: _Variant
    discreet: _Variant


class MessageFactory:
    """Renders templates and assembles complete, standards-conforming messages."""

    def __init__(self, config: Config, templates: Path) -> None:
        self.config = config
        self.env = Environment(
            loader=FileSystemLoader(templates / "email"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.footers = config.footer.crisis_footers()
        # A message is prepared per lesson and country (footers differ); bound the cache by
        # that, so a normal set of lessons never clears it and renders again on every pass.
        self._cache_limit = 512 * (len(self.footers.countries) + 1)
        self._cache: dict[str, PreparedMessage] = {}
        self._date: tuple[datetime, bytes] | None = None
        self._by_identity: dict[tuple[int, int, str], tuple[Sequence, Lesson, PreparedMessage]] = {}

    def _footer_context(self) -> dict[str, Any]:
        footer = self.config.footer
        return {
            "disclaimer": footer.disclaimer,
            **{name: _marker(name) for name in PERSONAL},
        }

    def _cached(
        self, key_parts: tuple[object, ...], make: Callable[[str], PreparedMessage]
    ) -> PreparedMessage:
        """The prepared message for these key parts, rendering it with `make(key)` only once."""
        key = hashlib.sha256(repr(key_parts).encode()).hexdigest()
        cached = self._cache.get(key)
        if cached is None:
            if len(self._cache) > self._cache_limit:  # content changes rarely; bound memory
                self._cache.clear()
                self._by_identity.clear()
            cached = self._cache[key] = make(key)
        return cached

    def prepare_lesson(
        self, sequence: Sequence, lesson: Lesson, country: str = ""
    ) -> PreparedMessage:
        """Render `lesson` once per footer country; cached by content, so an edit renders anew.

        `country` is the reader's choice (Subscriber.country); readers whose choices give
        the same help lines share one prepared message.
        """
        code = self.footers.resolve(country)
        # Loaded sequences are immutable and replaced whole on reload, so identity is a sound
        # fast key; the content key below still catches identical text across reloads.
        fast = self._by_identity.get((id(sequence), id(lesson), code))
        if fast is not None and fast[0] is sequence and fast[1] is lesson:
            return fast[2]
        day = sequence.day_of(lesson.id) or 0
        phase_title = sequence.phase_title(lesson.phase)
        discreet_subject = lesson.discreet_subject or self.config.sender.discreet_subject

        def make(key: str) -> PreparedMessage:
            body = render_template_body(
                lesson.body,
                {
                    "sequence_title": sequence.title,
                    "day": day,
                    "total_days": len(sequence),
                    "lesson_title": lesson.title,
                },
            )
            context = {
                **self._footer_context(),
                "day": day,
                "total_days": len(sequence),
                "sequence_title": sequence.title,
                "phase_title": phase_title,
                "lesson_title": lesson.title,
                "content_note": lesson.content_note,
                "reflection": lesson.reflection,
                # markdown-it escapes all text and raw HTML is disabled: this is safe markup.
                "body_html": Markup(markdown_to_html(body)),  # noqa: S704
                "body_text": markdown_to_text(body),
                "discreet_subject": discreet_subject,
            }
            return self._prepare(
                key, "lesson", context, (lesson.subject, discreet_subject), sequence, code
            )

        # Everything the rendering reads is in the key, so editing sequence.yaml renders anew.
        prepared = self._cached(
            (sequence.id, sequence.title, phase_title, len(sequence), day, lesson, code), make
        )
        self._by_identity[(id(sequence), id(lesson), code)] = (sequence, lesson, prepared)
        return prepared

    def prepare_closing(self, sequence: Sequence, country: str = "") -> PreparedMessage:
        """The one short email sent the day after the last lesson."""
        code = self.footers.resolve(country)
        discreet_subject = self.config.sender.discreet_subject

        def make(key: str) -> PreparedMessage:
            context = {
                **self._footer_context(),
                "sequence_title": sequence.title,
                "total_days": len(sequence),
                "discreet_subject": discreet_subject,
                "online_url": "",  # nothing to read online for this one
                "manage_url": "",  # and nothing left to pause: the stop link stays
            }
            subjects = (f"Thank you for these {len(sequence)} days", discreet_subject)
            return self._prepare(key, "closing", context, subjects, sequence, code)

        return self._cached(("closing", sequence.id, sequence.title, len(sequence), code), make)

    def prepare_confirm(
        self, sequence: Sequence, pending_days: int, country: str = ""
    ) -> PreparedMessage:
        """The double opt-in email; its link is the personal `action_url`."""
        code = self.footers.resolve(country)
        sender = self.config.sender

        def make(key: str) -> PreparedMessage:
            context = {
                **self._footer_context(),
                "sequence_title": sequence.title,
                "total_days": len(sequence),
                "discreet_name": sender.discreet_name,
                "pending_days": pending_days,
                "manage_url": "",  # nothing to manage before confirming
                "online_url": "",
            }
            subjects = (
                f"Please confirm: {sequence.title}",
                f"Please confirm: {sender.discreet_name}",
            )
            return self._prepare(key, "confirm", context, subjects, sequence, code)

        return self._cached(
            ("confirm", sequence.id, sequence.title, len(sequence), pending_days, code), make
        )

    def _prepare(
        self,
        key: str,
        template: str,
        context: dict[str, Any],
        subjects: tuple[str, str],
        sequence: Sequence,
        country: str,
    ) -> PreparedMessage:
        """Both variants; `country`: a code from footers.resolve, whose lines the footer shows."""
        sender = self.config.sender
        boundary = f"=_drg_{key[:24]}"  # '=_' never occurs in quoted-printable output
        # In discreet mode the list's display name is the neutral sender name too, and its id
        # is a digest: a sequence id such as "no-contact" says what the mail is about.
        discreet_label = f"notes-{hashlib.sha256(sequence.id.encode()).hexdigest()[:12]}"
        variants = []
        for discreet, subject, from_name in (
            (False, subjects[0], sender.name),
            (True, subjects[1], sender.discreet_name),
        ):
            # The page title is the neutral site name in both modes: read online, the page
            # lands in browser history, where a lesson's subject would name the topic.
            values = {**context, "discreet": discreet, "title": sender.discreet_name}
            # Discreet mode names every line neutrally ("24-hour support line").
            values["crisis"] = self.footers.resolved(country, discreet)
            values["preheader"] = subject if discreet else ""
            text = self.env.get_template(f"{template}.txt").render(values)
            page = self.env.get_template(f"{template}.html").render(values)
            head = [
                encode_text("From", encode_address(from_name, sender.address)),
                encode_text("Subject", subject),
            ]
            if sender.reply_to:
                head.append(encode_text("Reply-To", sender.reply_to))
            title = from_name if discreet else sequence.title
            list_id = f"{discreet_label if discreet else sequence.id}.{sender.domain}"
            head += [
                # Only the phrase may be encoded: the <id> must stay readable for filters.
                encode_text("List-Id", encode_address(title, list_id)),
                b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                b"Auto-Submitted: auto-generated",
                b"MIME-Version: 1.0",
                f'Content-Type: multipart/alternative; boundary="{boundary}"'.encode("ascii"),
            ]
            variants.append(
                _Variant(
                    CRLF.join(head) + CRLF,
                    _Part(text, escape=False),
                    _Part(page, escape=True),
                    page,
                    text,
                )
            )
        return PreparedMessage(key, boundary, variants[0], variants[1])

    def _date_header(self, when: datetime) -> bytes:
        # A pass stamps all its messages with the same time; format it once.
        if self._date is None or self._date[0] != when:
            self._date = (when, format_datetime(when).encode("ascii"))
        return self._date[1]

    @staticmethod
    def personal_values(recipient: Recipient, personal: Personal) -> dict[str, str]:
        """The values of the PERSONAL markers for one recipient."""
        name = clean_header_text(recipient.name)
        return {
            "greeting": f"Hi {name}," if name else "Hello,",
            "manage_url": personal.manage_url,
            "unsubscribe_url": personal.unsubscribe_url,
            "online_url": personal.online_url,
            "action_url": personal.action_url,
        }

    def readable(
        self, prepared: PreparedMessage, recipient: Recipient, personal: Personal
    ) -> tuple[str, str]:
        """The HTML page and the plain text exactly as this recipient's email shows them."""
        variant = prepared.discreet if recipient.discreet else prepared.normal
        values = self.personal_values(recipient, personal)
        page = _MARK.sub(lambda m: html.escape(values[m.group(1)]), variant.page)
        return page, _MARK.sub(lambda m: values[m.group(1)], variant.plain)

    def build(
        self, prepared: PreparedMessage, recipient: Recipient, personal: Personal, when: datetime
    ) -> bytes:
        """The complete message for one recipient, CRLF line endings, 7-bit clean."""
        variant = prepared.discreet if recipient.discreet else prepared.normal
        values = self.personal_values(recipient, personal)
        unsubscribe = f"<{personal.unsubscribe_url}>"
        if self.config.unsubscribe_mailto:
            unsubscribe += f", <mailto:{self.config.unsubscribe_mailto}?subject=unsubscribe>"
        check_header_text(unsubscribe, "List-Unsubscribe")
        check_header_text(personal.message_id, "Message-ID")
        boundary = prepared.boundary.encode("ascii")
        return b"".join(
            (
                b"Date: ",
                self._date_header(when),
                CRLF,
                encode_text("To", encode_address(recipient.name, recipient.email)),
                CRLF,
                b"Message-ID: ",
                personal.message_id.encode("ascii"),
                CRLF,
                variant.head,
                b"List-Unsubscribe: ",
                unsubscribe.encode("ascii"),
                CRLF,
                CRLF,
                b"--",
                boundary,
                CRLF,
                b"Content-Type: text/plain; charset=utf-8\r\n",
                b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
                variant.text.encode(values),
                b"--",
                boundary,
                CRLF,
                b"Content-Type: text/html; charset=utf-8\r\n",
                b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
                variant.html.encode(values),
                b"--",
                boundary,
                b"--\r\n",
            )
        )
