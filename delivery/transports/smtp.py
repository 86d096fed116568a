"""SMTP transport on aiosmtplib: one long-lived connection per worker, reconnecting as needed."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass

import aiosmtplib

from delivery.transports.base import Envelope, SendResult, Status, classify
from guide.config import SMTPConfig
from guide.errors import TransportConfigError

log = logging.getLogger(__name__)
_UNSAFE_ADDRESS = frozenset(' <>()[],;:"\\\r\n\t')


def _ssl_cause(err: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@dataclass
class SMTPTransport:
    """Connections to one relay, configured by the `smtp` section."""

    config: SMTPConfig
    name: str = "smtp"

    async def connect(self) -> SMTPConnection:
        """A connection that opens on first send."""
        return SMTPConnection(self.config)

    async def close(self) -> None:
        """Nothing is held between connections."""

    def client(self) -> aiosmtplib.SMTP:
        """A configured, unconnected aiosmtplib client."""
        c = self.config
        credentials = bool(c.username)
        # With credentials, TLS is required unless the operator explicitly chose 'none':
        # a password must never cross the network in clear text by accident.
        start_tls: bool | None = {"starttls": True, "none": False, "tls": False}.get(c.security)
        if c.security == "auto":
            start_tls = True if credentials else None
        context: ssl.SSLContext | None = None
        if c.ca_file:
            context = ssl.create_default_context(cafile=c.ca_file)
        return aiosmtplib.SMTP(
            hostname=c.host,
            port=c.port,
            use_tls=c.security == "tls",
            start_tls=start_tls,
            validate_certs=c.verify_certificates,
            tls_context=context,
            timeout=c.timeout,
            local_hostname=c.local_hostname or None,
            username=c.username or None,
            password=c.password or None,
        )


class SMTPConnection:
    """One SMTP session reused for many messages; reconnects after a disconnect."""

    def __init__(self, config: SMTPConfig) -> None:
        self.config = config
        self.transport = SMTPTransport(config)
        self.client: aiosmtplib.SMTP | None = None

    async def _open(self) -> aiosmtplib.SMTP:
        if self.client is not None and self.client.is_connected:
            return self.client
        client = self.transport.client()
        try:
            await client.connect()
        except aiosmtplib.SMTPAuthenticationError as err:
            if 400 <= err.code < 500:  # 454 4.7.0: the relay's auth service is down for now
                raise
            raise TransportConfigError(
                "smtp.username",
                f"the relay refused the login ({err.code} {err.message}); check the password",
            ) from err
        except aiosmtplib.SMTPException as err:
            tls_error = _ssl_cause(err)
            if tls_error is not None:
                raise TransportConfigError(
                    "smtp.verify_certificates", f"TLS with {self.config.host} failed: {tls_error}"
                ) from err
            # Only aiosmtplib's own negotiation errors (a bare SMTPException) say STARTTLS or
            # AUTH is missing. Connect errors and relay replies quote a host name or free text
            # ("421 smtp-auth.example.net busy") and must stay transient.
            if type(err) is aiosmtplib.SMTPException and (
                "STARTTLS" in str(err) or "AUTH" in str(err).upper()
            ):
                raise TransportConfigError("smtp.security", f"{err}") from err
            raise
        except ssl.SSLError as err:
            raise TransportConfigError(
                "smtp.verify_certificates", f"TLS with {self.config.host} failed: {err}"
            ) from err
        self.client = client
        return client

    async def send(self, envelope: Envelope) -> SendResult:
        """Send one message; a dropped connection is transient and reopened next time."""
        # aiosmtplib raises ValueError for an address that could smuggle SMTP parameters (a
        # space, '<'); such a recipient is unusable: final, like a relay's 553 5.1.3. A cheap
        # check, since addresses were validated when they were stored.
        recipient = envelope.recipient
        if not recipient.isascii() or any(ch in recipient for ch in _UNSAFE_ADDRESS):
            return SendResult(Status.PERMANENT, None, f"5.1.3 unusable address {recipient!r}")
        try:
            client = await self._open()
            # mail/rcpt/data rather than sendmail(): one recipient per message, and our bytes
            # are CRLF already, so sendmail's second address parse and second line-ending pass
            # (for SIZE) are pure cost on the hottest path.
            options = [f"SIZE={len(envelope.data)}"] if client.supports_extension("size") else []
            await client.mail(envelope.sender, options=options)
            await client.rcpt(recipient)
            response = await client.data(envelope.data)
            reply = response.message
        except TransportConfigError:
            raise
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as err:
            await self.close()
            return SendResult(Status.TRANSIENT, None, f"connection lost: {err}")
        except aiosmtplib.SMTPResponseException as err:
            if err.code == 421:  # the relay is closing this session
                await self.close()
            else:
                await self._reset()
            return classify(err.code, err.message)
        except (aiosmtplib.SMTPException, OSError) as err:
            await self.close()
            return SendResult(Status.TRANSIENT, None, f"relay unreachable: {err}")
        return SendResult(Status.DELIVERED, 250, " ".join(reply.split()))

    async def _reset(self) -> None:
        # After a refused transaction the session must be reset before the next MAIL FROM.
        if self.client is None or not self.client.is_connected:
            return
        try:
            await self.client.rset()
        except aiosmtplib.SMTPException:
            await self.close()

    async def close(self) -> None:
        """QUIT if connected; never raises."""
        client, self.client = self.client, None
        if client is None or not client.is_connected:
            return
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()
