"""SIGHUP: config.yaml, the lessons and the templates read again, checked, and swapped in."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, TemplateError, TemplateSyntaxError

from delivery.compose import Composer
from delivery.lessoncheck import render_problems
from guide.clock import Clock
from guide.config import Config, load_config
from guide.config_fields import FromKey, FromSecret, marker
from guide.config_reader import fields_of
from guide.errors import ConfigError, LessonError
from guide.library import LessonLibrary
from guide.redact import redact
from web.context import WebContext
from wiring.notify import Notifier
from wiring.parts import Parts, make_composer, make_limiter

log = logging.getLogger(__name__)

# What a running service takes from a new config.yaml: values only the composer, the rate
# limiter, the pages and the log read. Anything else (a port, a folder, the database, a key)
# belongs to parts built once at start, so a change to it is reported as needing a restart.
LIVE = (
    "dispatch.rate_per_second",
    "dispatch.rate_per_hour",
    "sender.name",
    "sender.discreet_name",
    "sender.discreet_subject",
    "footer",
    "log_level",
)
RATES = ("dispatch.rate_per_second", "dispatch.rate_per_hour")
# WebContext state that outlives a reload: the sign-up rate limits (what a client already sent).
KEPT = frozenset({"client_limit", "address_limit"})


def is_live(key: str) -> bool:
    """Whether a running service can take a new value of this dotted key."""
    return any(key == live or key.startswith(f"{live}.") for live in LIVE)


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The config.yaml keys whose values differ between two configurations, as dotted paths."""
    keys: list[str] = []
    for name, info in fields_of(type(old)).items():
        before, after = getattr(old, name), getattr(new, name)
        if before == after:
            continue
        origin = marker(info)
        if isinstance(origin, FromKey):
            keys.append(prefix + origin.key)
        elif isinstance(origin, FromSecret):
            keys.append(prefix + origin.file_key)  # the key that points at it; never the value
        elif origin is not None:
            continue  # set by the loader, not by the file (the file's own path)
        elif fields_of(type(before)) and type(before) is type(after):
            keys.extend(changed_keys(before, after, f"{prefix}{name}."))
        else:
            keys.append(prefix + name)
    return keys


def merged(current: Config, new: Config) -> Config:
    """`current` with the live keys of `new`: what the service runs on after a reload."""
    for key in LIVE:
        current = _replaced(current, key.split("."), _value(new, key))
    return current


def _value(config: Any, key: str) -> Any:
    for name in key.split("."):
        config = getattr(config, name)
    return config


def _replaced(section: Any, path: list[str], value: Any) -> Any:
    name, rest = path[0], path[1:]
    inner = _replaced(getattr(section, name), rest, value) if rest else value
    return dataclasses.replace(section, **{name: inner})


@dataclass(frozen=True)
class Candidate:
    """A reload read and checked in full, ready to be swapped in."""

    config: Config
    composer: Composer
    library: LessonLibrary
    context: WebContext | None
    live: tuple[str, ...]
    restart: tuple[str, ...]


def prepare(
    current: Config, composer: Composer, context: WebContext | None, clock: Clock
) -> Candidate:
    """Read config.yaml, the lessons and the templates again and check them, changing nothing.

    Raises what a bad edit raises (ConfigError, LessonError, a template error, OSError).
    """
    new = load_config(current.source)
    changed = changed_keys(current, new)
    config = merged(current, new)
    # New parts from the new values; the link signer stays: its key needs a restart.
    fresh = make_composer(config, composer.signer)
    check_templates(fresh.factory.env)
    library = LessonLibrary(config.lessons_dir)
    library.load()
    # What start refuses, a reload refuses: a lesson the new templates cannot compose.
    library.verify_with(lambda found: render_problems(fresh, found, clock()))
    page_context = None
    if context is not None:
        page_context = dataclasses.replace(context, config=config, composer=fresh, library=library)
        check_templates(page_context.env)
    return Candidate(
        config,
        fresh,
        library,
        page_context,
        tuple(key for key in changed if is_live(key)),
        tuple(key for key in changed if not is_live(key)),
    )


def check_templates(env: Environment) -> None:
    """Compile every template `env` loads, so a syntax error is found before anything is sent."""
    for name in env.list_templates():
        env.get_template(name)


def apply(parts: Parts, context: WebContext | None, candidate: Candidate) -> None:
    """Swap every reference to the new parts, in one step of the event loop (so, atomically)."""
    dispatcher = parts.dispatcher
    if any(key in RATES for key in candidate.live):
        # A new limiter only when a rate changed: the old one's tokens are what was just sent.
        dispatcher.limiter = make_limiter(candidate.config, parts.store)
    dispatcher.config = candidate.config
    dispatcher.settings = candidate.config.dispatch
    dispatcher.composer = candidate.composer
    dispatcher.library = candidate.library
    parts.config = candidate.config
    parts.composer = candidate.composer
    parts.library = candidate.library
    if context is not None and candidate.context is not None:
        # Handlers hold the application's one context (an aiohttp app is frozen once it
        # runs), so it takes the fresh context's references, limits excepted.
        for item in dataclasses.fields(WebContext):
            if item.name not in KEPT:
                setattr(context, item.name, getattr(candidate.context, item.name))
    logging.getLogger().setLevel(candidate.config.log_level)


def describe(err: BaseException) -> str:
    """One line naming the file (and line, and key) of what made a reload fail."""
    if isinstance(err, LessonError):
        more = len(err.problems) - 1
        return str(err.problems[0]) + (f" (and {more} more)" if more > 0 else "")
    if isinstance(err, TemplateSyntaxError):
        return f"{err.filename or err.name}:{err.lineno}: {err.message}"
    if isinstance(err, OSError) and err.filename:
        return f"{err.filename}: {err.strerror or err}"
    if isinstance(err, ConfigError | TemplateError):
        return str(err)
    return f"{type(err).__name__}: {err}"


class Reloader:
    """Runs one reload at a time on SIGHUP and tells systemd about it."""

    def __init__(
        self, parts: Parts, context: WebContext | None, notifier: Notifier, clock: Clock
    ) -> None:
        self.parts = parts
        self.context = context
        self.notifier = notifier
        self.clock = clock
        self.lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[bool]] = set()
        self.closed = False

    def request(self) -> None:
        """The SIGHUP handler: start a reload (several signals run one after another)."""
        if self.closed:
            return
        task = asyncio.get_running_loop().create_task(self.reload())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def reload(self) -> bool:
        """Read, check, swap; on any error keep what runs and say so in one ERROR line."""
        async with self.lock:
            if self.closed:
                return False
            self.notifier.reloading()
            try:
                return await self._reload()
            finally:
                if not self.closed:  # once stopping, READY=1 would contradict STOPPING=1
                    self.notifier.ready("reload done")

    async def _reload(self) -> bool:
        source = self.parts.config.source or Path("(defaults)")
        try:
            # Reading and rendering every lesson takes a moment: off the loop, which keeps
            # sending and serving pages with the parts it has until the new ones are ready.
            candidate = await asyncio.to_thread(
                prepare, self.parts.config, self.parts.composer, self.context, self.clock
            )
        except Exception as err:  # whatever it is, the running version stays
            log.error(
                "reload failed; still running the last good configuration and lessons: %s",
                redact(describe(err)),
            )
            return False
        if self.closed:
            return False
        apply(self.parts, self.context, candidate)
        for key in candidate.restart:
            log.warning("needs a restart: %s (changed in %s; the old value stays)", key, source)
        changed = ", ".join(candidate.live) or "nothing that applies while running"
        log.info("reloaded %s, lessons and templates; changed: %s", source, changed)
        return True

    async def close(self) -> None:
        """No more reloads; wait for one that is running."""
        self.closed = True
        for task in list(self.tasks):
            await task
