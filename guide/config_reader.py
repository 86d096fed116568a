"""Reading config.yaml into the configuration classes: errors name key path and line; secrets."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping as AbstractMapping
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import pydantic
from pydantic import TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError

from guide.config_fields import (
    PATH_LIMIT,
    UNKNOWN_KEY,
    FromKey,
    FromSecret,
    expected,
    marker,
    plain,
)
from guide.errors import ConfigError
from guide.private import read_secret
from guide.text import is_one_line
from guide.yamlsrc import Mapping, SourceList

T = TypeVar("T")
K = TypeVar("K")
_RULE = "config_rule"
# The top-level key relative paths are relative to (the config file's folder when absent).
BASE_DIR = "base_dir"
_MAPPING_ERRORS = frozenset(
    ("dataclass_type", "dataclass_exact_type", "model_type", "model_attributes_type", "dict_type")
)
# Reported only because an earlier field failed; the earlier error is the one to show.
_CONSEQUENCES = frozenset(("default_factory_not_called",))
Loc = tuple[str | int, ...]


def rule_error(message: str) -> PydanticCustomError:
    """An error whose message is given, for a check no type or bound can state."""
    return PydanticCustomError(_RULE, message)


def fields_of(owner: Any) -> dict[str, FieldInfo]:
    """The fields of a pydantic dataclass or model (none for anything else)."""
    found = getattr(owner, "__pydantic_fields__", None)
    return found if isinstance(found, dict) else {}


class ConfigFile:
    """One parsed config.yaml, turned into configuration classes with errors at file:line."""

    def __init__(
        self, data: Any, *, source: str, base: Path, env: AbstractMapping[str, str]
    ) -> None:
        self.data = Mapping() if data is None else data
        self.source = source
        self.env = env
        self.base = self._base_dir(base)

    def _base_dir(self, folder: Path) -> Path:
        # Relative paths mean relative to base_dir when the file sets it, else to the file's
        # folder: /etc/daily-recovery-guide/config.yaml can then name the checkout's lessons.
        if not isinstance(self.data, dict) or self.data.get(BASE_DIR) is None:
            if isinstance(self.data, dict):
                self.data.pop(BASE_DIR, None)  # `base_dir:` alone keeps the default
            return folder
        line = self.data.line_of(BASE_DIR) if isinstance(self.data, Mapping) else 1
        value = self.data.pop(BASE_DIR)
        if not isinstance(value, str) or not value or not is_one_line(value):
            message = "must be a folder path (absolute, or relative to this file's folder)"
            raise ConfigError(BASE_DIR, message, source=f"{self.source}:{line}")
        if len(value) > PATH_LIMIT:
            message = f"must be at most {PATH_LIMIT} characters"
            raise ConfigError(BASE_DIR, message, source=f"{self.source}:{line}")
        chosen = folder / Path(value).expanduser()
        if not chosen.is_dir():
            message = f"{chosen} is not a folder"
            raise ConfigError(BASE_DIR, message, source=f"{self.source}:{line}")
        return chosen

    def build(self, root: type[T], keys: type[K]) -> tuple[T, K]:
        """The file validated as `root`, and as `keys`: the keys it holds under other names."""
        values, other = self._split(self.data, root, keys, ())
        file_keys = self._validate(keys, other)
        if isinstance(values, dict):
            self._derive(root, file_keys, values, ())
        return self._validate(root, values), file_keys

    def where(self, key: str) -> str:
        """file:line of a dotted key path (the line of its section when the key is absent)."""
        return f"{self.source}:{self._locate(tuple(key.split('.')))[1]}"

    def error(self, key: str, message: str) -> ConfigError:
        """A ConfigError for a dotted key path, at its file:line."""
        return ConfigError(key, message, source=self.where(key))

    def secret(
        self,
        name: str,
        file_value: str,
        file_key: str,
        check: Callable[[str], str | None] | None = None,
    ) -> str:
        """A secret from $DRG_<NAME>, the file `file_value`, or $CREDENTIALS_DIRECTORY/<name>.

        A file found must hold a value, and `check` must pass: each error names the source.
        """
        env_name = f"DRG_{name.upper()}"
        value, key, source, where = self.env.get(env_name, ""), f"${env_name}", None, ""
        if not value and file_value:
            path = self.base / Path(file_value).expanduser()
            key, source, where = file_key, self.where(file_key), f"{path}: "
            value = read_secret(path, key, source)
        elif not value and self.env.get("CREDENTIALS_DIRECTORY"):
            credential = Path(self.env["CREDENTIALS_DIRECTORY"]) / name
            if credential.exists():
                key = f"$CREDENTIALS_DIRECTORY/{name}"
                value = read_secret(credential, key)
        problem = check(value) if value and check is not None else None
        if problem:
            raise ConfigError(key, f"{where}{problem}", source=source)
        return value

    def _split(self, data: Any, public: Any, keys: Any, loc: Loc) -> tuple[Any, dict[str, Any]]:
        # Sort one mapping into the attributes of `public` and the keys only `keys` models,
        # dropping empty values (`key:` alone keeps the default).
        if not isinstance(data, dict):
            return data, {}
        attributes, key_fields = fields_of(public), fields_of(keys)
        values: dict[str, Any] = {}
        other: dict[str, Any] = {}
        for name, value in data.items():
            info = attributes.get(name)
            if info is None and name not in key_fields:
                values[name] = value  # unknown: validation names it, with its line
                continue
            if info is not None and (origin := marker(info)) is not None:
                raise self._refusal((*loc, name), origin)
            if value is None:
                continue
            sub_keys = key_fields[name].annotation if name in key_fields else None
            if info is None:
                other[name] = self._split_value(value, sub_keys, None, (*loc, name))[0]
                continue
            values[name], nested = self._split_value(value, info.annotation, sub_keys, (*loc, name))
            if nested:
                other[name] = nested
        return values, other

    def _split_value(
        self, value: Any, annotation: Any, keys: Any, loc: Loc
    ) -> tuple[Any, dict[str, Any]]:
        if fields_of(annotation):
            return self._split(value, annotation, keys, loc)
        item = get_args(annotation)[0] if get_origin(annotation) is tuple else None
        if fields_of(item) and isinstance(value, list):
            return [self._split(v, item, None, (*loc, i))[0] for i, v in enumerate(value)], {}
        return value, {}

    def _refusal(self, loc: Loc, origin: object) -> ConfigError:
        key, line = self._locate(loc)
        message = UNKNOWN_KEY
        if isinstance(origin, FromSecret):
            file_key = ".".join([*(str(part) for part in loc[:-1]), origin.file_key])
            env_name = f"$DRG_{origin.name.upper()}"
            message = f"secrets do not belong in config.yaml: set {env_name} or {file_key}"
        return ConfigError(key, message, source=f"{self.source}:{line}")

    def _derive(self, public: Any, keys: Any, values: dict[str, Any], loc: Loc) -> None:
        # Fill in the attributes config.yaml sets under other keys, and the secrets.
        for name, info in fields_of(public).items():
            origin = marker(info)
            if isinstance(origin, FromKey):
                value = _lookup(keys, origin.key)
                if value is not None:
                    values[name] = origin.convert(value) if origin.convert else value
            elif isinstance(origin, FromSecret):
                file_key = ".".join([*(str(part) for part in loc), origin.file_key])
                secret = self.secret(
                    origin.name, _lookup(keys, origin.file_key) or "", file_key, origin.check
                )
                values[name] = secret.encode() if info.annotation is bytes else secret
            elif fields_of(info.annotation):
                # A section the file leaves out still gets its secrets (from $DRG_…).
                nested = values.setdefault(name, {})
                if isinstance(nested, dict):
                    self._derive(info.annotation, getattr(keys, name, None), nested, (*loc, name))

    def _validate(self, model: type[T], data: Any) -> T:
        try:
            return TypeAdapter(model).validate_python(data, context={"base": self.base})
        except pydantic.ValidationError as err:
            first = next(e for e in err.errors() if e["type"] not in _CONSEQUENCES)
            key, line = self._locate(first["loc"])
            message = _message(first, _field_at(model, first["loc"]))
            raise ConfigError(key, message, source=f"{self.source}:{line}") from err

    def _locate(self, loc: Loc) -> tuple[str, int]:
        # The dotted key path of `loc` and the line of the deepest part of it the file has.
        node: Any = self.data
        line: int = getattr(node, "line", 1)
        key = ""
        for part in loc:
            if isinstance(part, int):
                key += f"[{part}]"
                found = isinstance(node, SourceList) and part < len(node)
                line = node.item_lines[part] if found else line
                node = node[part] if found else None
            else:
                key = f"{key}.{part}" if key else part
                line = node.line_of(part) if isinstance(node, Mapping) else line
                node = node.get(part) if isinstance(node, dict) else None
        return key or "(top level)", line


def _lookup(keys: Any, path: str) -> Any:
    for name in path.split("."):
        keys = getattr(keys, name, None)
    return keys


def _field_at(root: Any, loc: Loc) -> FieldInfo | None:
    owner: Any = root
    info: FieldInfo | None = None
    for part in loc:
        if isinstance(part, int):
            args = get_args(plain(info).annotation) if info is not None else ()
            owner, info = (args[0] if args else None), None
        else:
            info = fields_of(owner).get(part)
            owner = plain(info).annotation if info is not None else None
    return info


def _message(error: ErrorDetails, info: FieldInfo | None) -> str:
    kind = error["type"]
    # An empty text where one is needed reads better as missing than as too short.
    if kind == "missing" or (kind in ("string_too_short", "too_short") and error["input"] == ""):
        return "is required"
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return UNKNOWN_KEY
    if kind in _MAPPING_ERRORS:
        return "must be a mapping of keys"
    if kind == _RULE:
        return error["msg"]
    limit = error.get("ctx", {}).get("max_length")
    if kind in ("string_too_long", "too_long") and limit is not None:
        # A bound on a text checked after its other validators is reported as too_long.
        text = isinstance(error["input"], str)
        return (
            f"must be at most {limit} characters" if text else f"must have at most {limit} entries"
        )
    return expected(info) if info is not None else "is not valid"
