"""SMTP transport on aiosmtplib: one long-lived connection per worker, reconnecting as needed."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiosmtplib

from delivery.transports.base import Envelope, SendResult, Status, classify
from delivery.transports.sessions import Session, open_session
from guide.errors import TransportConfigError

if TYPE_CHECKING:
    # Only a type here: the sender child process runs this module without the config models.
    from guide.config import SMTPConfig

log = logging.getLogger(__name__)
_UNSAFE_ADDRESS = frozenset(' <>()[],;:"\\\r\n\t')


def _usable(address: str) -> bool:
    """Whether `address` can go between <> in MAIL FROM or RCPT TO as it is."""
    return (
        address.isascii()
        and address.isprintable()
        and not any(ch in address for ch in _UNSAFE_ADDRESS)
    )


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
        self.session: Session | None = None

    async def _open(self) -> Session:
        if self.session is not None:
            if self.session.usable:
                return self.session
            await self.close()  # dropped, or the relay said 421 between messages
        client = self.transport.client()
        try:
            await client.connect()
            session = await open_session(client, self.config.timeout)
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
        self.session = session
        return session

    async def send(self, envelope: Envelope) -> SendResult:
        """Send one message; a dropped connection is transient and reopened next time."""
        # An address that could smuggle SMTP commands or parameters (a space, '<', CR LF) is
        # unusable: final, like a relay's 553 5.1.3. A cheap check, since addresses were
        # validated when they were stored.
        recipient = envelope.recipient
        if not _usable(recipient):
            return SendResult(Status.PERMANENT, None, f"5.1.3 unusable address {recipient!r}")
        if not _usable(envelope.sender):
            raise TransportConfigError(
                "sender.address", f"{envelope.sender!r} cannot be an SMTP envelope sender"
            )
        try:
            session = await self._open()
            response = await session.transaction(envelope.sender, recipient, envelope.data)
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
        if self.session is None or not self.session.usable:
            return
        try:
            await self.session.reset()
        except (aiosmtplib.SMTPException, OSError):
            await self.close()

    async def close(self) -> None:
        """QUIT if connected; never raises."""
        session, self.session = self.session, None
        if session is not None:
            await session.quit()
