"""What every handler needs, handed in by the wiring: no handler builds a part of its own."""

from __future__ import annotations

import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from delivery.compose import Composer
from delivery.transports import Transport
from guide.clock import Clock
from guide.config import Config
from guide.crisis import CrisisFooters
from guide.foreground import Foreground
from guide.lessons import Sequence
from guide.library import LessonLibrary
from guide.records import Subscriber
from guide.store import Store
from guide.tokens import LinkSigner
from scheduler.stats import DispatchStats
from web.csrf import csrf_token
from web.limits import SlidingWindow

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "web"


def page_environment(folder: Path) -> Environment:
    """The Jinja environment every set of pages renders with: escaped, strict, tidy output."""
    return Environment(
        loader=FileSystemLoader(folder),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


# How often pages look at the lesson files for edits. Looking is a walk and a stat of every
# file (1.4-2.2 ms on the event loop), so once per request delayed everything else on the
# loop, the dispatch pass included; an edit still shows within a second.
LESSON_CHECK_SECONDS = 1.0


@dataclass
class WebContext:
    """The parts the pages use, and the page renderer; one per application."""

    config: Config
    store: Store
    library: LessonLibrary
    composer: Composer
    transport: Transport
    clock: Clock
    stats: DispatchStats
    scheduler_running: Callable[[], bool] = lambda: True
    # Shared with the dispatcher: requests in flight hold its pass back (guide/foreground.py).
    foreground: Foreground = field(default_factory=Foreground)
    # Seconds for LESSON_CHECK_SECONDS only, not the time of day: that is `clock`.
    monotonic: Callable[[], float] = time.monotonic
    env: Environment = field(init=False)
    client_limit: SlidingWindow = field(init=False)
    address_limit: SlidingWindow = field(init=False)
    zones: list[str] = field(init=False)
    footers: CrisisFooters = field(init=False)
    country_choices: list[dict[str, str]] = field(init=False)
    _sequences: dict[str, Sequence] = field(init=False, default_factory=dict)
    _checked: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.env = page_environment(TEMPLATES)
        web_config = self.config.web
        clock = self.clock

        def seconds() -> float:
            return clock().timestamp()

        self.client_limit = SlidingWindow(web_config.client_limit_per_hour, 3600, seconds)
        self.address_limit = SlidingWindow(web_config.address_limit_per_day, 86400, seconds)
        self.zones = sorted(z for z in zoneinfo.available_timezones() if "/" in z or z == "UTC")
        self.footers = self.config.footer.crisis_footers()
        # Each option carries its timezones, so site.js can pre-select the reader's country.
        self.country_choices = [
            {"code": c.code, "name": c.name, "zones": " ".join(self.footers.zones_of(c.code))}
            for c in self.footers.countries.values()
        ]

    @property
    def signer(self) -> LinkSigner:
        """The signer of every link a page makes or checks."""
        return self.composer.signer

    def sequences(self) -> dict[str, Sequence]:
        """The sequences as currently loaded; the files are looked at at most once a second."""
        now = self.monotonic()
        if not self._sequences or now - self._checked >= LESSON_CHECK_SECONDS:
            self._sequences = self.library.current()
            self._checked = now
        return self._sequences

    @property
    def sequence(self) -> Sequence:
        """The default sequence, as currently loaded."""
        return self.sequences()[self.config.default_sequence]

    def render(
        self, request: web.Request, template: str, status: int = 200, **values: Any
    ) -> web.Response:
        """A page with the shared layout values and the CSRF token.

        The footer has the help lines of the `subscriber` value's country in their mode; a
        page without one (sign-up, confirm, unsubscribe) gets the default country's, named
        neutrally as in discreet mode: it may be open where someone else can see it.
        """
        subscriber = values.get("subscriber")
        if isinstance(subscriber, Subscriber):
            crisis = self.footers.footer(subscriber.country, subscriber.discreet)
        else:
            crisis = self.footers.footer("", True)
        page = self.env.get_template(template).render(
            site_title=self.config.sender.discreet_name,
            quick_exit_url=self.config.web.quick_exit_url,
            crisis=crisis,
            disclaimer=self.config.footer.disclaimer,
            country_choices=self.country_choices,
            default_country=self.footers.default_country,
            csrf=csrf_token(request),
            **values,
        )
        return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")

    def message(
        self,
        request: web.Request,
        heading: str,
        *paragraphs: str,
        status: int = 200,
        link: dict[str, str] | None = None,
    ) -> web.Response:
        """A simple page with a heading and a few paragraphs."""
        return self.render(
            request, "message.html", status, heading=heading, paragraphs=paragraphs, link=link
        )


CONTEXT = web.AppKey("context", WebContext)


def context_of(request: web.Request) -> WebContext:
    """The context of the application serving `request`."""
    return request.app[CONTEXT]
