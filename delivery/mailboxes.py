"""Where bounce reports are read from: stdin (a pipe transport), a Maildir or IMAP."""

from __future__ import annotations

import imaplib
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from guide.bounce_config import IMAPConfig
from guide.errors import ConfigError, GuideError

# A report carries the returned message (a lesson is some 20 KB); what lies beyond this is
# the tail of a huge original, which the report's own parts come before.
MAX_REPORT_BYTES = 4 * 1024 * 1024
_CHUNK = 1024 * 1024


def read_limited(stream: BinaryIO, limit: int = MAX_REPORT_BYTES) -> bytes:
    """Up to `limit` bytes of `stream`, reading the rest to its end so the writer never blocks."""
    data = stream.read(limit)
    while stream.read(_CHUNK):
        pass  # a pipe transport counts an unread rest as a failed delivery
    return data


@dataclass(frozen=True)
class MaildirMessage:
    """One message in a Maildir's new/ folder."""

    path: Path

    def read(self) -> bytes:
        """Its first MAX_REPORT_BYTES bytes."""
        with self.path.open("rb") as handle:
            return handle.read(MAX_REPORT_BYTES)

    def done(self) -> Path:
        """Move it to cur/ marked seen (the Maildir convention, `:2,S`), as a mail client would."""
        target = self.path.parent.parent / "cur" / f"{self.path.name.partition(':')[0]}:2,S"
        os.rename(self.path, target)
        return target


def maildir_messages(root: Path) -> Iterator[MaildirMessage]:
    """The messages waiting in `root`/new, oldest name first; FileNotFoundError without one."""
    new = root / "new"
    if not (root / "cur").is_dir():
        raise FileNotFoundError(2, "not a Maildir (no cur/ folder)", str(root))
    names = sorted(entry.name for entry in os.scandir(new) if entry.is_file())
    for name in names:
        if not name.startswith("."):
            yield MaildirMessage(new / name)


class IMAPMailbox:
    """One IMAP folder read with the stdlib's imaplib; blocking, so callers use a thread."""

    def __init__(self, config: IMAPConfig) -> None:
        self.config = config
        self.client: imaplib.IMAP4 | None = None
        self.where = f"{config.host}:{config.port}"

    def open(self) -> None:
        """Connect, log in and select the folder; GuideError/ConfigError say what failed."""
        c = self.config
        context = ssl.create_default_context(cafile=c.ca_file or None)
        if not c.verify_certificates:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            if c.security == "tls":
                client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    c.host, c.port, ssl_context=context, timeout=c.timeout
                )
            else:
                client = imaplib.IMAP4(c.host, c.port, timeout=c.timeout)
                if c.security == "starttls":
                    client.starttls(context)
        except (OSError, imaplib.IMAP4.error) as err:
            raise GuideError(f"IMAP {self.where}: cannot connect: {err}") from err
        self.client = client
        try:
            client.login(c.username, c.password)
        except imaplib.IMAP4.error as err:
            raise ConfigError(
                "bounces.imap.username", f"{self.where} refused the login: {err}"
            ) from err
        status, reply = client.select(_quoted(c.folder))
        if status != "OK":
            raise GuideError(f"IMAP {self.where}: cannot open folder {c.folder!r}: {reply}")

    def unseen(self) -> list[bytes]:
        """The UIDs of the messages not yet read."""
        status, reply = self._client().uid("SEARCH", "UNSEEN")
        return reply[0].split() if status == "OK" and reply and reply[0] else []

    def fetch(self, uid: bytes) -> bytes:
        """The first MAX_REPORT_BYTES of a message, leaving it unseen until done()."""
        section = f"(BODY.PEEK[]<0.{MAX_REPORT_BYTES}>)"
        status, reply = self._client().uid("FETCH", uid.decode("ascii"), section)
        for item in reply if status == "OK" else ():
            if isinstance(item, tuple):
                return bytes(item[1])
        return b""

    def done(self, uid: bytes) -> None:
        """Mark it seen, and move it to done_folder when one is configured."""
        client, number = self._client(), uid.decode("ascii")
        client.uid("STORE", number, "+FLAGS", "(\\Seen)")
        folder = self.config.done_folder
        if not folder:
            return
        if "MOVE" in client.capabilities:
            client.uid("MOVE", number, _quoted(folder))
            return
        status, reply = client.uid("COPY", number, _quoted(folder))
        if status != "OK":
            raise GuideError(f"IMAP {self.where}: cannot copy to {folder!r}: {reply}")
        # Expunged when the folder is closed (close()), so a failed copy never loses one.
        client.uid("STORE", number, "+FLAGS", "(\\Deleted)")

    def close(self) -> None:
        """Expunge what was moved and log out; never raises."""
        client, self.client = self.client, None
        if client is None:
            return
        try:
            if client.state == "SELECTED":
                client.close()
            client.logout()
        except (OSError, imaplib.IMAP4.error):
            pass

    def _client(self) -> imaplib.IMAP4:
        if self.client is None:
            raise GuideError(f"IMAP {self.where}: not connected")
        return self.client


def _quoted(folder: str) -> str:
    # A folder name with a space must be an IMAP quoted string.
    escaped = folder.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
