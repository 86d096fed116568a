"""The one composer: subscriber + lesson + signed links → signed message bytes, for every email."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from email.utils import make_msgid

from delivery.dkim import DKIMSigner
from delivery.message import MessageFactory, Personal, PreparedMessage, Recipient
from delivery.transports.base import Envelope
from delivery.verp import ReturnPath
from guide.config import Config
from guide.lessons import Lesson, Sequence
from guide.progress import CLOSING_ID
from guide.records import Subscriber
from guide.tokens import LinkSigner

# Who a link points at: a stored subscriber's id, or a label for previews and test sends, whose
# links lead nowhere because no subscriber has that id.
Reference = int | str


@dataclass(frozen=True)
class Composed:
    """A finished message: its Message-ID and what the transport hands on."""

    message_id: str
    envelope: Envelope

    @property
    def data(self) -> bytes:
        """The message bytes, signed when DKIM is configured."""
        return self.envelope.data


@dataclass(frozen=True)
class Readable:
    """A message as its recipient reads it: the HTML page and the plain text."""

    html: str
    text: str


class Composer:
    """Builds every email the service sends: lessons, closing, confirmation and test sends."""

    def __init__(
        self,
        config: Config,
        factory: MessageFactory,
        signer: LinkSigner,
        dkim: DKIMSigner | None = None,
    ) -> None:
        self.config = config
        self.factory = factory
        self.signer = signer
        self.dkim = dkim
        # bounces.enabled: each subscriber's mail has a signed bounce address (delivery/verp.py).
        self.return_path = (
            ReturnPath.from_config(config.bounces, config.sender.domain, signer.secret)
            if config.bounces.enabled
            else None
        )

    def signing_with(self, signer: LinkSigner) -> Composer:
        """The same composer with links signed by `signer` and no DKIM (for previews)."""
        return Composer(self.config, self.factory, signer, None)

    # -- links ---------------------------------------------------------------------------------

    def links(
        self, who: Reference, now: datetime, *, message_id: str = "", lesson_id: str = ""
    ) -> Personal:
        """The manage and unsubscribe links of `who`, and read-online for `lesson_id`."""
        signer = self.signer
        online = ""
        if lesson_id and lesson_id != CLOSING_ID:
            # A keyed ref, not the lesson id: the URL lands in browser history (guide/tokens.py).
            online = signer.url("lesson", "lesson", [who, signer.lesson_ref(lesson_id)], now)
        return Personal(
            message_id=message_id,
            unsubscribe_url=signer.url("unsubscribe", "unsubscribe", who, now),
            manage_url=signer.url("manage", "manage", who, now),
            online_url=online,
        )

    def manage_url(self, who: Reference, now: datetime) -> str:
        """The signed link to a subscriber's manage page."""
        return self.signer.url("manage", "manage", who, now)

    def message_id(self, subscriber: Subscriber, lesson_id: str) -> str:
        """Derived, not random: a re-send after a crash carries the same Message-ID."""
        return self.signer.message_id(
            self.config.sender.domain,
            subscriber.id,
            subscriber.generation,
            lesson_id,
            subscriber.repeats,
        )

    def envelope_sender(self, subscriber: Subscriber) -> str:
        """The envelope sender (Return-Path) of mail to `subscriber`: the bounce address."""
        if self.return_path is None:
            return self.config.sender.address
        return self.return_path.address(subscriber.id, subscriber.generation)

    # -- the kinds of email --------------------------------------------------------------------

    def lesson(
        self,
        subscriber: Subscriber,
        sequence: Sequence,
        lesson: Lesson,
        now: datetime,
        *,
        message_id: str = "",
    ) -> Composed:
        """One lesson for one subscriber (`message_id`: self.message_id's, if already known)."""
        prepared = self.factory.prepare_lesson(sequence, lesson, subscriber.country)
        message_id = message_id or self.message_id(subscriber, lesson.id)
        links = self.links(subscriber.id, now, message_id=message_id, lesson_id=lesson.id)
        sender = self.envelope_sender(subscriber)
        return self._compose(prepared, _recipient(subscriber), links, now, sender)

    def closing(
        self, subscriber: Subscriber, sequence: Sequence, now: datetime, *, message_id: str = ""
    ) -> Composed:
        """The short goodbye sent the day after the last lesson."""
        prepared = self.factory.prepare_closing(sequence, subscriber.country)
        message_id = message_id or self.message_id(subscriber, CLOSING_ID)
        links = self.links(subscriber.id, now, message_id=message_id)
        sender = self.envelope_sender(subscriber)
        return self._compose(prepared, _recipient(subscriber), links, now, sender)

    def confirmation(self, subscriber: Subscriber, sequence: Sequence, now: datetime) -> Composed:
        """The double opt-in email; always discreet, with no manage link before consent."""
        prepared = self.factory.prepare_confirm(
            sequence, self.config.web.pending_days, subscriber.country
        )
        links = Personal(
            message_id=self._random_id(),
            unsubscribe_url=self.signer.url("unsubscribe", "unsubscribe", subscriber.id, now),
            action_url=self.signer.url("confirm", "confirm", subscriber.id, now),
        )
        # Whoever filled in the form may not be the person who reads this inbox, so the one
        # email sent before consent names nothing.
        recipient = Recipient(subscriber.email or "", subscriber.name, discreet=True)
        return self._compose(prepared, recipient, links, now, self.envelope_sender(subscriber))

    def sample(
        self, recipient: Recipient, sequence: Sequence, lesson: Lesson, now: datetime
    ) -> tuple[Composed, Readable]:
        """A lesson for a preview or a test send, with links that lead to no subscriber."""
        prepared = self.factory.prepare_lesson(sequence, lesson)
        who = f"sample:{recipient.email}"
        links = self.links(who, now, message_id=self._random_id(), lesson_id=lesson.id)
        composed = self._compose(prepared, recipient, links, now)
        return composed, self._readable(prepared, recipient, links)

    def online(
        self,
        subscriber: Subscriber,
        sequence: Sequence,
        lesson: Lesson,
        now: datetime,
        online_url: str,
    ) -> Readable:
        """A lesson exactly as this subscriber's email shows it, for reading in a browser."""
        prepared = self.factory.prepare_lesson(sequence, lesson, subscriber.country)
        links = dataclasses.replace(self.links(subscriber.id, now), online_url=online_url)
        return self._readable(prepared, _recipient(subscriber), links)

    # -- assembly ------------------------------------------------------------------------------

    def _compose(
        self,
        prepared: PreparedMessage,
        recipient: Recipient,
        personal: Personal,
        now: datetime,
        sender: str = "",
    ) -> Composed:
        data = self.factory.build(prepared, recipient, personal, now)
        if self.dkim is not None:
            data = self.dkim.sign(data)
        # Test sends and previews name no subscriber: their bounces go to the sender address.
        envelope = Envelope(sender or self.config.sender.address, recipient.email, data)
        return Composed(personal.message_id, envelope)

    def _readable(
        self, prepared: PreparedMessage, recipient: Recipient, personal: Personal
    ) -> Readable:
        html, text = self.factory.readable(prepared, recipient, personal)
        return Readable(html, text)

    def _random_id(self) -> str:
        # Only for emails that are never re-sent by dispatch, so nothing needs to derive it.
        return make_msgid(domain=self.config.sender.domain)


def _recipient(subscriber: Subscriber) -> Recipient:
    return Recipient(subscriber.email or "", subscriber.name, subscriber.discreet)
