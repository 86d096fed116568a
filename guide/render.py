"""Lesson bodies: Jinja (sandboxed, strict), then Markdown to inline-styled HTML and plain text."""

from __future__ import annotations

import re
import textwrap
import traceback
from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment
from markdown_it import MarkdownIt
from markdown_it.token import Token

from guide.errors import GuideError

# What a lesson body may refer to; every value is the same for every subscriber, so a body is
# rendered once per lesson and never per person (see DESIGN.md, "Performance design").
BODY_VARIABLES = frozenset({"sequence_title", "day", "total_days", "lesson_title"})
# Filters without arguments: each returns text no longer than its input.
BODY_FILTERS = frozenset({"capitalize", "lower", "title", "trim", "upper"})
# The personal parts of an email are marked [[drg:name]] between rendering and sending; a
# lesson that wrote one would be filled with a link, or fail every send of that lesson.
PERSONAL_MARK = "[[drg:"

# Limits (lessons/README.md lists them). The longest lesson today is 2,436 characters.
TITLE_MAX = 150  # characters of a lesson's or a sequence's title (and a subject)
BODY_MAX = 20_000  # characters of body source: about 3,000 words, a 15-minute read
BODY_RENDERED_MAX = 40_000  # characters of body after its template is filled
BODY_HTML_MAX = 80_000  # bytes of body HTML; the email layout around it adds about 4 KB
# Gmail clips an email whose HTML is over 102 KB and hides the rest, the pause and stop
# links and the crisis resources with it: the whole HTML part must stay under that.
HTML_PART_MAX = 100_000  # bytes of the complete HTML part
MESSAGE_MAX = 1_000_000  # bytes of the complete message, both parts, as sent

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
# range, lipsum, dict, cycler, joiner and namespace are not a lesson's business (and range
# and lipsum build large output from a few characters).
_body_env.globals.clear()
_body_env.filters = {name: _body_env.filters[name] for name in BODY_FILTERS}

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


class BodyTemplateError(GuideError, ValueError):
    """A lesson body's template uses something a lesson body may not; `offset` is its line."""

    def __init__(self, offset: int, message: str) -> None:
        self.offset = offset
        self.message = message
        super().__init__(f"line {offset + 1} of the body: {message}")


# The grammar a body may use. Without loops, calls, attribute access, `*`, `**` and `%`, and
# with only argument-free filters that never lengthen text, rendering is one walk of the tree
# and its output is at most len(body) times the longest variable: `{{ 'x' * 10**8 }}` is refused
# before anything is built (even Jinja's compile-time constant folding would build it).
_ALLOWED_NODES = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Const,
    nodes.Name,
    nodes.If,
    nodes.CondExpr,
    nodes.Compare,
    nodes.Operand,
    nodes.And,
    nodes.Or,
    nodes.Not,
    nodes.Neg,
    nodes.Pos,
    nodes.Add,
    nodes.Sub,
    nodes.Div,
    nodes.FloorDiv,
    nodes.Concat,
    nodes.Filter,
    nodes.Test,
)
ALLOWED_SYNTAX = (
    "{{ variable }}, {% if %}/{% elif %}/{% else %}, comparisons, and/or/not, + - / // ~, "
    "`is` tests, and the filters " + ", ".join(sorted(BODY_FILTERS))
)
_REFUSED = {
    nodes.For: "{% for %} loops are",
    nodes.Call: "calling a function or method is",
    nodes.Getattr: "attribute access is unsafe and",
    nodes.Getitem: "item access is unsafe and",
    nodes.Mul: "the * operator is",
    nodes.Pow: "the ** operator is",
    nodes.Mod: "the % operator is",
    nodes.Assign: "{% set %} is",
    nodes.AssignBlock: "{% set %} is",
    nodes.Macro: "{% macro %} is",
    nodes.CallBlock: "{% call %} is",
    nodes.FilterBlock: "{% filter %} is",
    nodes.With: "{% with %} is",
    nodes.Include: "{% include %} is",
    nodes.Extends: "{% extends %} is",
    nodes.Import: "{% import %} is",
    nodes.FromImport: "{% from … import %} is",
    nodes.Block: "{% block %} is",
}


def template_problems(ast: nodes.Template) -> Iterator[tuple[int, str]]:
    """What a parsed body uses beyond ALLOWED_SYNTAX, as (line offset, message)."""
    available = ", ".join(sorted(BODY_VARIABLES))
    for node in _walk(ast):
        offset = (node.lineno or 1) - 1
        if not isinstance(node, _ALLOWED_NODES):
            what = _REFUSED.get(type(node), f"{type(node).__name__} is")
            yield offset, f"{what} not allowed in a lesson body (allowed: {ALLOWED_SYNTAX})"
        elif isinstance(node, nodes.Name) and node.name not in BODY_VARIABLES:
            yield offset, f"undefined template variable {node.name!r} (available: {available})"
        elif isinstance(node, nodes.Filter) and node.name not in BODY_FILTERS:
            allowed = ", ".join(sorted(BODY_FILTERS))
            yield (
                offset,
                f"template syntax error: No filter named {node.name!r} (allowed: {allowed})",
            )
        elif isinstance(node, nodes.Filter) and (
            node.args or node.kwargs or node.dyn_args or node.dyn_kwargs
        ):
            # center(10**8), indent(10**8): a filter's arguments can make its output any size.
            yield offset, f"arguments to {node.name!r} are not allowed in a lesson body"


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    yield node
    for child in node.iter_child_nodes():
        yield from _walk(child)


def _parse(body: str) -> nodes.Template:
    """The body's template tree; BodyTemplateError for bad syntax or anything not allowed."""
    try:
        ast = _body_env.parse(body)
    except TemplateSyntaxError as err:
        offset = (err.lineno or 1) - 1
        raise BodyTemplateError(offset, f"template syntax error: {err.message}") from err
    except ValueError as err:  # an integer literal of more than 4,300 digits
        raise BodyTemplateError(0, f"template syntax error: {err}") from err
    for offset, message in template_problems(ast):
        raise BodyTemplateError(offset, message)
    return ast


def render_template_body(body: str, context: Mapping[str, Any]) -> str:
    """Fill the body's Jinja variables (sandboxed, ALLOWED_SYNTAX only; an unknown name raises)."""
    if len(body) > BODY_MAX:
        raise BodyTemplateError(0, f"is {len(body):,} characters; the limit is {BODY_MAX:,}")
    return _body_env.from_string(_parse(body)).render(**context)


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
    if len(body) > BODY_MAX:
        # Nothing else is looked at: a huge body is a mistake, not a draft to proofread.
        return [(0, f"is {len(body):,} characters; the limit is {BODY_MAX:,}")]
    try:
        _parse(body)
    except BodyTemplateError as err:
        problems = [(err.offset, err.message)]
    else:
        problems = _trial_render(body)
    problems.extend(_check_markdown(body))
    return sorted(problems)


def _trial_render(body: str) -> list[tuple[int, str]]:
    # What fails only when rendered ({{ 1 / 0 }}) must fail here, in the admin's check, and not
    # in the dispatch tick; and what renders must fit in an email. The longest values a body
    # can be given are used, so the sizes checked are the largest it can reach.
    sample = {
        "sequence_title": "S" * TITLE_MAX,
        "day": 999,
        "total_days": 999,
        "lesson_title": "L" * TITLE_MAX,
    }
    try:
        rendered = render_template_body(body, sample)
    except Exception as err:  # any error here would stop sending
        frames = traceback.extract_tb(err.__traceback__)
        line = next((f.lineno for f in reversed(frames) if f.filename == "<template>"), None)
        return [((line or 1) - 1, f"template error: {err}")]
    if len(rendered) > BODY_RENDERED_MAX:
        return [(0, f"renders to {len(rendered):,} characters; the limit is {BODY_RENDERED_MAX:,}")]
    html = markdown_to_html(rendered)
    if len(html.encode()) > BODY_HTML_MAX:
        size = len(html.encode())
        return [(0, f"renders to {size:,} bytes of HTML; the limit is {BODY_HTML_MAX:,}")]
    outputs = (rendered, html, markdown_to_text(rendered))
    if PERSONAL_MARK not in body and any(PERSONAL_MARK in output for output in outputs):
        # Markdown escapes (\:) and entities (&#58;) can spell the mark without writing it.
        return [(0, f"renders to {PERSONAL_MARK}…]], which is reserved for the email's own links")]
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
