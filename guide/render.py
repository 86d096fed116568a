"""Lesson bodies: Jinja (sandboxed, strict), then Markdown to inline-styled HTML and plain text."""

from __future__ import annotations

import re
import textwrap
import traceback
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment
from markdown_it import MarkdownIt
from markdown_it.token import Token

# What a lesson body may refer to; every value is the same for every subscriber, so a body is
# rendered once per lesson and never per person (see DESIGN.md, "Performance design").
BODY_VARIABLES = frozenset({"sequence_title", "day", "total_days", "lesson_title"})

# Raw HTML stays off: a lesson is text, and an email must carry nothing we did not design.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


class _AllLinksMarkdown(MarkdownIt):
    """A parser that keeps every link, so the checker can name unsafe ones.

    markdown-it's default quietly turns javascript:, data: and similar links into plain text.
    """

    def validateLink(self, url: str) -> bool:
        return True


# A second parser that does see HTML and every link, only to tell an admin they wrote some.
_html_finder = _AllLinksMarkdown("commonmark", {"html": True})
_body_env = SandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
)

# Email clients drop <style> blocks unpredictably; inline styles are what survives everywhere.
STYLES = {
    "p": "margin:0 0 16px 0;",
    "h2": "font-size:20px;line-height:1.3;margin:28px 0 10px 0;font-weight:bold;",
    "h3": "font-size:18px;line-height:1.3;margin:24px 0 8px 0;font-weight:bold;",
    "h4": "font-size:16px;line-height:1.3;margin:20px 0 8px 0;font-weight:bold;",
    "ul": "margin:0 0 16px 0;padding:0 0 0 24px;",
    "ol": "margin:0 0 16px 0;padding:0 0 0 24px;",
    "li": "margin:0 0 6px 0;",
    "blockquote": (
        "margin:0 0 16px 0;padding:0 0 0 14px;border-left:3px solid #c9c1b4;color:#4d4a45;"
    ),
    "a": "color:#2d5b5f;text-decoration:underline;",
    "hr": "border:0;border-top:1px solid #ddd6ca;margin:24px 0;",
    "pre": "white-space:pre-wrap;font-family:monospace;",
    "code": "font-family:monospace;",
}
_TAG = re.compile(r"<(p|h[2-4]|ul|ol|li|blockquote|a|hr|pre|code)\b")
_ALLOWED_LINKS = ("https://", "mailto:")


def render_template_body(body: str, context: Mapping[str, Any]) -> str:
    """Fill the body's Jinja variables (sandboxed; an unknown name raises)."""
    return _body_env.from_string(body).render(**context)


def markdown_to_html(source: str) -> str:
    """Markdown to HTML with inline styles; raw HTML in the source is shown as text."""
    html = _markdown.render(source)
    return _TAG.sub(lambda m: f'<{m.group(1)} style="{STYLES[m.group(1)]}"', html)


def markdown_to_text(source: str, width: int = 72) -> str:
    """Markdown to readable plain text: wrapped paragraphs, '-' bullets, links as 'text (url)'."""
    writer = _TextWriter(width)
    for token in _markdown.parse(source):
        writer.feed(token)
    return "\n".join(writer.lines).strip("\n") + "\n"


class _TextWriter:
    """Turns markdown-it block tokens into lines of plain text."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.lines: list[str] = []
        self.quote = 0
        self.lists: list[list[int]] = []  # [ordered (0/1), next number]
        self.marker: str | None = None
        self.heading = ""
        self.blank = False
        self.last_quote = 0

    def feed(self, token: Token) -> None:
        kind = token.type
        if kind == "blockquote_open":
            self.quote += 1
        elif kind == "blockquote_close":
            self.quote -= 1
            self.blank = True
        elif kind in ("bullet_list_open", "ordered_list_open"):
            start = token.attrGet("start")
            self.lists.append([int(kind == "ordered_list_open"), int(start) if start else 1])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            self.lists.pop()
            self.blank = True
        elif kind == "list_item_open":
            ordered, number = self.lists[-1]
            self.marker = f"{number}. " if ordered else "- "
            self.lists[-1][1] = number + 1
        elif kind == "heading_open":
            self.heading = token.tag
        elif kind in ("paragraph_close", "heading_close"):
            self.heading = ""
            self.blank = self.blank or not token.hidden
        elif kind == "hr":
            self.emit(["* * *"], "", "")
            self.blank = True
        elif kind in ("code_block", "fence"):
            self.emit(["    " + line for line in token.content.rstrip("\n").split("\n")], "", "")
            self.blank = True
        elif kind == "inline":
            self.inline(token)

    def inline(self, token: Token) -> None:
        text = _inline_text(token.children or [])
        depth = len(self.lists)
        indent = "   " * max(depth - 1, 0)
        if self.marker is not None:
            first, rest = indent + self.marker, indent + " " * len(self.marker)
            self.marker = None
        else:
            first = rest = indent + (" " * 3 if depth else "")
        if self.heading:
            underline = "=" if self.heading == "h1" else "-"
            self.emit([text, underline * len(text)], first, rest)
            self.blank = True
            return
        wrapped: list[str] = []
        for piece in text.split("\n"):
            wrapped.extend(
                textwrap.wrap(
                    piece,
                    width=max(self.width - 2 * self.quote, 20),
                    initial_indent=first if not wrapped else rest,
                    subsequent_indent=rest,
                    break_long_words=False,
                    break_on_hyphens=False,
                )
                or [first.rstrip()]
            )
        self.emit(wrapped, "", "")

    def emit(self, lines: list[str], first: str, rest: str) -> None:
        prefix = "> " * self.quote
        if self.blank and self.lines:
            # The blank line belongs to the quote only when both neighbours are quoted.
            self.lines.append(("> " * min(self.quote, self.last_quote)).rstrip())
        self.blank = False
        self.last_quote = self.quote
        for index, line in enumerate(lines):
            lead = first if index == 0 else rest
            self.lines.append((prefix + lead + line).rstrip())


def _inline_text(children: list[Token]) -> str:
    parts: list[str] = []
    href_stack: list[tuple[str, int]] = []
    for child in children:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
        elif child.type == "link_open":
            href_stack.append((str(child.attrGet("href") or ""), len(parts)))
        elif child.type == "link_close" and href_stack:
            href, start = href_stack.pop()
            label = "".join(parts[start:])
            if href and label != href and href != f"mailto:{label}":
                parts.append(f" ({href.removeprefix('mailto:')})")
    return "".join(parts)


def check_body(body: str) -> list[tuple[int, str]]:
    """Problems in a lesson body as (line offset within the body, message)."""
    try:
        ast = _body_env.parse(body)
        # This compiles the template, which is where unknown filters and tests are found.
        undeclared = meta.find_undeclared_variables(ast)
    except TemplateSyntaxError as err:  # includes TemplateAssertionError
        return [((err.lineno or 1) - 1, f"template syntax error: {err.message}")]
    problems: list[tuple[int, str]] = []
    available = ", ".join(sorted(BODY_VARIABLES))
    for name in sorted(undeclared - BODY_VARIABLES):
        offset = min(n.lineno for n in ast.find_all(nodes.Name) if n.name == name) - 1
        problems.append((offset, f"undefined template variable {name!r} (available: {available})"))
    if not problems:
        problems.extend(_trial_render(body))
    problems.extend(_check_markdown(body))
    return sorted(problems)


def _trial_render(body: str) -> list[tuple[int, str]]:
    # What fails only when rendered ({{ day.__class__ }}, {{ 1 / 0 }}) must fail here, in the
    # admin's check, and not in the dispatch tick.
    sample = {"sequence_title": "Sample", "day": 1, "total_days": 30, "lesson_title": "Sample"}
    try:
        render_template_body(body, sample)
    except Exception as err:  # any error here would stop sending
        frames = traceback.extract_tb(err.__traceback__)
        line = next((f.lineno for f in reversed(frames) if f.filename == "<template>"), None)
        return [((line or 1) - 1, f"template error: {err}")]
    return []


def _check_markdown(body: str) -> list[tuple[int, str]]:
    problems: list[tuple[int, str]] = []
    line = 0
    for token in _html_finder.parse(body):
        if token.map:
            line = token.map[0]
        if token.type == "html_block":
            problems.append((line, "raw HTML is not allowed; write Markdown"))
        elif token.type == "heading_open" and token.tag == "h1":
            problems.append(
                (line, "use ## for headings: the email shows the lesson title as the only #")
            )
        for child in token.children or []:
            if child.type == "html_inline":
                problems.append(
                    (line, f"raw HTML {child.content!r} is not allowed; write Markdown")
                )
            elif child.type == "image":
                problems.append((line, "images are not allowed: emails carry no remote resources"))
            elif child.type == "link_open":
                href = str(child.attrGet("href") or "")
                if not href.startswith(_ALLOWED_LINKS):
                    problems.append((line, f"link {href!r} must start with https:// or mailto:"))
    return problems
