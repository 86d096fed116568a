"""YAML loading that remembers the line of every key, so errors can name file:line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from guide.errors import YAMLSyntaxError


class Mapping(dict[str, Any]):
    """A YAML mapping that also knows the 1-based line of each key and of the mapping."""

    line: int = 1
    key_lines: dict[str, int]
    value_lines: dict[str, int]

    def __init__(self) -> None:
        super().__init__()
        self.key_lines = {}
        self.value_lines = {}

    def line_of(self, key: str) -> int:
        """The line of `key`, or of the mapping itself when the key is absent."""
        return self.key_lines.get(key, self.line)


class SourceList(list[Any]):
    """A YAML sequence that also knows the 1-based line of each item."""

    line: int = 1
    item_lines: list[int]

    def __init__(self) -> None:
        super().__init__()
        self.item_lines = []


class DuplicateKeyError(yaml.MarkedYAMLError):
    """PyYAML silently keeps the last of two equal keys; an admin's typo deserves an error."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that builds Mapping/SourceList and refuses duplicate keys."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Mapping:
    mapping = Mapping()
    mapping.line = node.start_mark.line + 1
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        key = str(key)
        if key in mapping:
            raise DuplicateKeyError(
                "while constructing a mapping",
                node.start_mark,
                f"duplicate key {key!r}",
                key_node.start_mark,
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = key_node.start_mark.line + 1
        # A block scalar's text starts on the line after its `|` or `>` indicator.
        block = isinstance(value_node, yaml.ScalarNode) and value_node.style in ("|", ">")
        mapping.value_lines[key] = value_node.start_mark.line + (2 if block else 1)
    return mapping


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> SourceList:
    items = SourceList()
    items.line = node.start_mark.line + 1
    for child in node.value:
        items.append(loader.construct_object(child, deep=True))
        items.item_lines.append(child.start_mark.line + 1)
    return items


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


_CONTEXT_IS_THE_MISTAKE = ("while scanning a simple key", "while scanning a quoted scalar")


def load_yaml(path: Path) -> Any:
    """Parse one YAML file into Mapping/SourceList/scalars, or raise YAMLSyntaxError."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise YAMLSyntaxError(path, 1, 1, f"not UTF-8 text ({err.reason})") from err
    return load_yaml_text(text, path)


def load_yaml_text(text: str, path: Path) -> Any:
    """Parse YAML text (named `path` in errors) like load_yaml."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        if err.context in _CONTEXT_IS_THE_MISTAKE and err.context_mark:
            # PyYAML notices a missing ':' or closing quote lines later; the admin's mistake is
            # where that key or string began.
            mark = err.context_mark
        line = mark.line + 1 if mark else 1
        column = mark.column + 1 if mark else 1
        problem = err.problem or err.context or "invalid YAML"
        raise YAMLSyntaxError(path, line, column, problem) from err
    except yaml.YAMLError as err:
        raise YAMLSyntaxError(path, 1, 1, str(err)) from err
