"""`lessons serve`: a local page of every day as the email it will be, reloaded on each save."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from cli.lesson_preview import Preview, Snapshot
from guide.clock import system_clock
from guide.config import Config
from guide.lessonfile import display
from guide.tokens import LinkSigner
from wiring.parts import TEMPLATES, make_composer

PAGES = TEMPLATES / "preview"
KEEPALIVE = 15.0  # seconds between event-stream lines, so an idle stream is not cut by a proxy
PREVIEW = web.AppKey("preview", Preview)
# The pages' own scripts and styles only; the email's HTML may style itself inline, nothing more.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "frame-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'"
)
EMAIL_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

Report = Callable[[str], None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Settings:
    """What every page needs besides the snapshot."""

    only: str | None  # the one sequence shown, or None for all
    env: Environment
    hosts: set[str] = field(default_factory=set)  # Host headers answered; empty: any


SETTINGS = web.AppKey("settings", Settings)


def page_env() -> Environment:
    """The preview pages' templates (HTML escaped)."""
    return Environment(
        loader=FileSystemLoader(PAGES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@web.middleware
async def guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse other Host names: a page of another site, rebound to 127.0.0.1, reads nothing."""
    hosts = request.app[SETTINGS].hosts
    if hosts and request.host not in hosts:
        raise web.HTTPMisdirectedRequest(text="this preview answers only on its own address\n")
    return await handler(request)


async def with_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every response: no caching (a reload shows the new text), no referrer, no sniffing."""
    response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"


def create_app(
    preview: Preview, *, only: str | None = None, report: Report = print
) -> web.Application:
    """The preview's pages over `preview`, watching its folders while the app runs."""
    app = web.Application(middlewares=[guarded])
    app[PREVIEW] = preview
    app[SETTINGS] = Settings(only, page_env())
    app.on_response_prepare.append(with_headers)
    app.router.add_get("/", index)
    app.router.add_get("/events", events)
    app.router.add_get("/static/{name:preview\\.(css|js)}", static)
    app.router.add_get("/{sequence}/{day:\\d+}", day_redirect)
    app.router.add_get("/{sequence}/{day:\\d+}/{mode:normal|discreet}", day_page)
    app.router.add_get("/{sequence}/{day:\\d+}/{mode:normal|discreet}/email.html", email_html)

    async def watching(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(preview.watch(stop, report))
        yield
        stop.set()
        await task

    async def end_streams(app: web.Application) -> None:
        preview.close()  # open event streams end, so stopping does not wait for them

    app.cleanup_ctx.append(watching)
    app.on_shutdown.append(end_streams)
    return app


def render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    """One preview page, tagged with the version of the snapshot it shows."""
    settings = request.app[SETTINGS]
    snapshot: Snapshot = context["snapshot"]
    shown = {
        key: value for key, value in snapshot.sequences.items() if settings.only in (None, key)
    }
    template = settings.env.get_template(name)
    text = template.render(version=snapshot.version, sequences=shown, only=settings.only, **context)
    return web.Response(text=text, status=status, content_type="text/html")


async def index(request: web.Request) -> web.Response:
    """Every sequence and day, or the checker's report above the last good list."""
    preview = request.app[PREVIEW]
    snapshot = preview.current
    lessons = sum(len(sequence) for sequence in snapshot.sequences.values())
    return render(
        request, "index.html", snapshot=snapshot, lessons=lessons, folder=display(preview.lessons)
    )


async def day_redirect(request: web.Request) -> web.Response:
    """A day without a mode: the normal one."""
    raise web.HTTPFound(f"{request.path}/normal")


async def day_page(request: web.Request) -> web.Response:
    """One day in one mode: what the inbox shows, the HTML part and the text part."""
    preview = request.app[PREVIEW]
    snapshot = preview.current
    sequence_id, day, mode = (
        request.match_info["sequence"],
        int(request.match_info["day"]),
        request.match_info["mode"],
    )
    found = snapshot.find(sequence_id, day)
    only = request.app[SETTINGS].only
    if found is None or only not in (None, sequence_id):
        # Still a live page: once a save adds this day it appears here by itself.
        return render(request, "day.html", 404, snapshot=snapshot, day=day, mode=mode, lesson=None)
    sequence, lesson = found
    email = None
    if not snapshot.broken:
        email = snapshot.email(sequence, day, discreet=mode == "discreet", clock=preview.clock)
    context: dict[str, Any] = {"sequence": sequence, "lesson": lesson, "email": email}
    context |= {"path": display(lesson.path), "phase": sequence.phase_title(lesson.phase)}
    return render(request, "day.html", snapshot=snapshot, day=day, mode=mode, **context)


async def email_html(request: web.Request) -> web.Response:
    """The email's HTML part by itself, for the page's frame."""
    preview = request.app[PREVIEW]
    snapshot = preview.current
    found = snapshot.find(request.match_info["sequence"], int(request.match_info["day"]))
    if found is None or snapshot.broken:
        text = "\n".join(snapshot.report) or "no such day"
        return web.Response(text=text, status=409 if snapshot.broken else 404)
    discreet = request.match_info["mode"] == "discreet"
    day = int(request.match_info["day"])
    email = snapshot.email(found[0], day, discreet=discreet, clock=preview.clock)
    response = web.Response(text=email.html, content_type="text/html")
    response.headers["Content-Security-Policy"] = EMAIL_POLICY
    return response


async def static(request: web.Request) -> web.FileResponse:
    """The pages' one stylesheet and one script, from templates/preview."""
    return web.FileResponse(PAGES / request.match_info["name"])


async def events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: the snapshot's version now, and again after every change."""
    preview = request.app[PREVIEW]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    # After a restart of the server the browser reconnects within half a second.
    await response.write(b"retry: 500\n\n")
    try:
        while not preview.closed:
            upcoming = preview.upcoming()
            await response.write(f"data: {preview.current.version}\n\n".encode())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(upcoming.wait(), KEEPALIVE)
    except ConnectionResetError:
        pass  # the page was closed or reloaded: nothing is waiting for this stream
    return response


def allowed_hosts(host: str, port: int) -> set[str]:
    """The Host headers a loopback preview answers to; empty (any) when bound wider."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        return set()
    return {f"{name}:{port}" for name in ("localhost", "127.0.0.1", "[::1]", host)}


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable only from this machine."""
    return bool(allowed_hosts(host, 0))


async def serve_preview(
    config: Config, host: str, port: int, only: str | None, out: TextIO, err: TextIO
) -> int:
    """Serve the preview until SIGINT or SIGTERM; 1 if `only` names no sequence."""
    # One line per save is ours to print; watchfiles' own per-batch INFO line would repeat it.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    lessons = config.lessons_dir
    if not lessons.is_dir():
        print(f"error: no lessons folder {display(lessons)}", file=err)
        return 1
    # Preview links are signed with a throwaway key: they must never work against a live site.
    signer = LinkSigner("preview-only", config.web.public_url, config.link_lifetime)
    preview = Preview(config, lessons, TEMPLATES, make_composer(config, signer), system_clock)
    known = preview.current.sequences
    if only is not None and not preview.current.broken and only not in known:
        print(f"no sequence {only!r} (known: {', '.join(sorted(known))})", file=err)
        return 1

    def report(line: str) -> None:
        print(line, file=out, flush=True)

    app = create_app(preview, only=only, report=report)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        app[SETTINGS].hosts.update(allowed_hosts(host, bound))
        name = f"[{host}]" if ":" in host else host
        if not is_loopback(host):
            warning = f"warning: {host} is reachable from other machines; the preview has no login"
            print(warning, file=err)
        state = preview.current.report[-1].rstrip(".") if preview.current.broken else "ok"
        report(f"previewing {display(lessons)} at http://{name}:{bound}/: {state} (Ctrl-C stops)")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
    report("stopped")
    return 0


def run_preview(
    config: Config, host: str, port: int, only: str | None, out: TextIO, err: TextIO
) -> int:
    """`lessons serve`: the exit status of serve_preview."""
    return asyncio.run(serve_preview(config, host, port, only, out, err))
