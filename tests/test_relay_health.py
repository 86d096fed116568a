"""A relay that fails every send for dispatch.relay_alert_seconds: /healthz 503, one ERROR.

Each kind of failure against a real server (or a real closed port): refused connections,
a relay that never answers, 4xx replies, a refused login and an untrusted certificate.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from delivery.transports import SMTPTransport
from guide.config import SMTPConfig
from tests.harness import Clock, add_many, config_for, make_parts, next_due
from tests.smtpd import Fault, SMTPServers, smtp_servers
from tests.test_serve import free_port
from web.app import create_app
from wiring import Parts, web_context

__all__ = ["smtp_servers"]

START = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
ALERT = 120  # dispatch.relay_alert_seconds in these tests
USER, PASSWORD = "guide", "relay-password-1"


@dataclass
class Service:
    """Parts sending over real SMTP to `smtp`, and the operator endpoints on a test server."""

    parts: Parts
    clock: Clock
    client: TestClient[Any, Any]

    async def health(self) -> tuple[int, dict[str, Any]]:
        resp = await self.client.get("/healthz")
        return resp.status, await resp.json()

    async def retry_now(self) -> None:
        """Move the clock to the next attempt (the retry backoff) and run a pass."""
        due = await next_due(self.parts)
        assert due is not None
        self.clock.now = max(self.clock.now, due)
        await self.parts.dispatcher.tick()


Factory = Callable[[SMTPConfig], Awaitable[Service]]


@pytest.fixture
async def make_service(tmp_path: Path) -> AsyncIterator[Factory]:
    opened: list[Service] = []

    async def make(smtp: SMTPConfig) -> Service:
        config = config_for(
            tmp_path / f"s{len(opened)}",
            relay_alert_seconds=ALERT,
            connections=1,
            sender_process=False,
        )
        config = dataclasses.replace(config, transport="smtp", smtp=smtp)
        clock = Clock(START)
        parts = await make_parts(config, clock, SMTPTransport(smtp))
        client = TestClient(TestServer(create_app(web_context(parts))))
        await client.start_server()
        await add_many(parts, [("ana@example.org", "UTC", "08:00")], START)
        service = Service(parts, clock, client)
        opened.append(service)
        return service

    yield make
    for service in opened:
        await service.client.close()
        await service.parts.close()


async def silent_server() -> tuple[asyncio.Server, int]:
    """A TCP listener that accepts connections and never says a word (no 220 greeting)."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


def errors(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and text in r.getMessage()
    ]


@pytest.mark.parametrize("kind", ["refused", "timeout", "4xx"])
async def test_every_send_failing_for_the_alert_time_is_an_outage_said_once(
    make_service: Factory,
    smtp_servers: SMTPServers,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    caplog.set_level(logging.INFO)
    silent = None
    if kind == "refused":
        smtp = SMTPConfig(host="127.0.0.1", port=free_port(), security="none", timeout=5)
    elif kind == "timeout":
        silent, port = await silent_server()
        smtp = SMTPConfig(host="127.0.0.1", port=port, security="none", timeout=1)
    else:
        server = await smtp_servers.start()
        server.script(*[Fault.reply_at("MAIL", "451 4.3.0 Try again later")] * 20)
        smtp = server.smtp_config()
    service = await make_service(smtp)
    address = f"127.0.0.1:{smtp.port}"
    try:
        await service.retry_now()  # the first failure: a deferral, not yet an outage
        status, body = await service.health()
        assert status == 200 and body["relay"].startswith("failing for 0 s")
        assert body["relay_address"] == address
        assert errors(caplog, "every send has failed") == []

        service.clock.advance(timedelta(seconds=ALERT))  # past the first retry (1 min)
        await service.retry_now()
        status, body = await service.health()
        assert status == 503, body
        [problem] = body["problems"]
        assert problem.startswith(f"relay {address}: every send has failed for {ALERT} s")
        assert "dispatch.relay_alert_seconds" in problem
        assert body["failing_seconds"] == ALERT
        [alert] = errors(caplog, "every send has failed")
        assert address in alert and "smtp.host" in alert

        await service.retry_now()  # a later failing pass says nothing more
        assert len(errors(caplog, "every send has failed")) == 1
        assert (await service.health())[0] == 503
    finally:
        if silent is not None:
            silent.close()


async def test_the_relay_accepting_again_ends_the_outage_with_one_info(
    make_service: Factory, smtp_servers: SMTPServers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = await smtp_servers.start()
    server.script(*[Fault.reply_at("RCPT", "421 4.7.0 Too busy, come back later")] * 3)
    service = await make_service(server.smtp_config())
    await service.retry_now()
    service.clock.advance(timedelta(seconds=ALERT))
    await service.retry_now()
    assert (await service.health())[0] == 503
    await service.retry_now()  # the script's third refusal
    await service.retry_now()  # delivered
    assert len(server.messages) == 1
    status, body = await service.health()
    assert status == 200 and body["relay"] == "ok" and body["problems"] == []
    [back] = [r for r in caplog.records if "accepts mail again" in r.getMessage()]
    assert back.levelno == logging.INFO and f"127.0.0.1:{server.port}" in back.getMessage()
    assert len(errors(caplog, "every send has failed")) == 1


@pytest.mark.parametrize("kind", ["login", "certificate"])
async def test_a_refused_login_or_certificate_is_unhealthy_at_once(
    make_service: Factory,
    smtp_servers: SMTPServers,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    # Not an outage to wait out: only a change of configuration mends it.
    server = await smtp_servers.start(starttls=True, credentials=(USER, PASSWORD))
    if kind == "login":
        smtp = server.smtp_config(password="not-the-password")
        key = "smtp.username"
    else:
        smtp = server.smtp_config(ca_file=str(smtp_servers.untrusted_ca_file()))
        key = "smtp.verify_certificates"
    service = await make_service(smtp)
    await service.retry_now()
    await service.parts.dispatcher.tick()
    status, body = await service.health()
    assert status == 503
    [problem] = body["problems"]
    assert problem.startswith(f"relay 127.0.0.1:{smtp.port}: sending halted: {key}")
    assert len(errors(caplog, "sending stopped")) == 1
    assert PASSWORD not in problem and "not-the-password" not in str(body)
    metrics = await (await service.client.get("/metrics")).text()
    assert f'drg_relay_up{{node="{service.parts.dispatcher.node}"}} 0.0' in metrics
