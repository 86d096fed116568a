"""One YAML file of a sequence: read only if it is safely inside the lessons folder, then checked
field by field, every problem collected with its line."""

from __future__ import annotations

from pathlib import Path

from guide.errors import Problem, YAMLSyntaxError
from guide.render import PERSONAL_MARK, TITLE_MAX
from guide.text import LINE_BREAKS, unsafe_characters
from guide.yamlsrc import Mapping, load_yaml

SUBJECT_MAX = 150  # characters of a subject line: mail apps show about 60
LINE_MAX = 500  # characters of any other one-line text (a content note)
TEXT_MAX = 2_000  # characters of a reflection or a description
FILE_MAX = 256 * 1024  # bytes of one YAML file: far above the longest lesson's 3 KB
# The longest text each field may hold; the body has its own limits in guide.render.
FIELD_MAX = {
    "title": TITLE_MAX,
    "subject": SUBJECT_MAX,
    "discreet_subject": SUBJECT_MAX,
    "description": TEXT_MAX,
    "reflection": TEXT_MAX,
}


class FileChecker:
    """Collects problems for one file so one run reports everything at once."""

    def __init__(self, path: Path, display: str, problems: list[Problem], root: Path) -> None:
        self.path = path
        self.display = display
        self.problems = problems
        self.root = root

    def add(self, line: int, field_name: str, message: str) -> None:
        """Record one problem at `line` of this file."""
        self.problems.append(Problem(self.display, line, field_name, message))

    def load(self) -> Mapping | None:
        """The file's top-level mapping, or None after recording why it cannot be used."""
        refusal = self._refusal()
        if refusal:
            self.add(1, "", refusal)
            return None
        try:
            data = load_yaml(self.path)
        except YAMLSyntaxError as err:
            self.add(err.line, "", f"YAML syntax error at column {err.column}: {err.message}")
            return None
        except OSError as err:
            self.add(1, "", f"cannot read: {err.strerror}")
            return None
        if not isinstance(data, Mapping):
            self.add(1, "", "must be a mapping of keys (key: value)")
            return None
        return data

    def _refusal(self) -> str:
        """Why this file must not be read at all, or ''."""
        # A link out of the lessons folder would send whatever it points at (a key, a config
        # file) to every subscriber, and a device or FIFO would hang the check.
        try:
            target = self.path.resolve(strict=True)
        except (OSError, RuntimeError):  # a dangling link, or a loop of links
            return "is a symbolic link to nothing (or a loop of links)"
        root = self.root.resolve()
        if not target.is_relative_to(root):
            return f"is a symbolic link to {target}, outside the lessons folder {root}"
        if not target.is_file():
            return "is not a regular file"
        size = target.stat().st_size
        if size > FILE_MAX:
            return f"is {size:,} bytes; a lesson file may be at most {FILE_MAX:,}"
        return ""

    def text(self, data: Mapping, key: str, *, required: bool, one_line: bool) -> str:
        """The text at `key` (stripped if one line), or '' after recording what is wrong."""
        value = data.get(key)
        line = data.line_of(key)
        if value is None:
            if required:
                self.add(line, key, "is required")
            return ""
        if not isinstance(value, str):
            self.add(line, key, "must be text")
            return ""
        if not value.strip():
            self.add(line, key, "must not be empty")
            return ""
        unsafe = unsafe_characters(value, multiline=not one_line)
        breaks = unsafe & LINE_BREAKS if one_line else set()
        if breaks:
            self.add(line, key, "must be one line")
        if unsafe - breaks:
            self.add(line, key, "contains a control character")
        if PERSONAL_MARK in value:
            self.add(line, key, f"{PERSONAL_MARK}…]] is reserved for the email's own links")
        limit = FIELD_MAX.get(key, LINE_MAX if one_line else 0)
        if limit and len(value.strip()) > limit:
            self.add(line, key, f"is {len(value.strip()):,} characters; the limit is {limit:,}")
        return value.strip() if one_line else value

    def unknown(self, data: Mapping, allowed: set[str]) -> None:
        """Record every key of `data` that is not in `allowed`."""
        for key in sorted(set(data) - allowed):
            self.add(data.line_of(key), key, f"unknown key (allowed: {', '.join(sorted(allowed))})")


def display(path: Path) -> str:
    """`path` as problems show it: relative to the working folder when inside it."""
    try:
        # absolute(), not resolve(): a symbolic link is named as itself, not as its target.
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
