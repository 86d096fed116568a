"""Read bounce reports: RFC 3464 delivery status notifications and RFC 5965 ARF complaints."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from email.utils import getaddresses

# What a report means for its subscriber (scheduler/bounces.py acts on it).
BOUNCED = "bounced"  # permanent failure: the address does not work
HELD = "held"  # permanent refusal by policy (5.7.x): an operator looks
DELAYED = "delayed"  # a temporary failure: noted and counted, nothing changes
COMPLAINT = "complaint"  # the reader marked a message as spam: never email them again
IGNORED = "ignored"  # no report, or one that asks for nothing

_STATUS = re.compile(r"\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_ENHANCED_IN_TEXT = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_SEVERITY = {"failed": 3, "delayed": 2}
# Report text comes from a stranger's server and ends up in the audit trail and in logs.
_REPLY_LIMIT = 500
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]+")
# Headers a delivering MTA writes with the address the report came to (Postfix, Exim, Dovecot).
RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "To")


@dataclass(frozen=True)
class Report:
    """What one message reports, reduced to what the service acts on."""

    outcome: str  # BOUNCED, HELD, DELAYED, COMPLAINT or IGNORED
    status: str = ""  # the RFC 3463 code, such as 5.1.1
    reply: str = ""  # the remote server's words (Diagnostic-Code), one line
    why: str = ""  # for IGNORED: why nothing is done

    def describe(self) -> str:
        """One line for the audit trail and last_error: code and reply."""
        if self.outcome == COMPLAINT:
            return f"complaint (feedback report: {self.reply or 'abuse'})"
        return " ".join(part for part in (self.status, self.reply) if part) or self.why


def one_line(text: str, limit: int = _REPLY_LIMIT) -> str:
    """`text` as a single clean line of at most `limit` characters."""
    flat = " ".join(_UNPRINTABLE.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def parse_message(data: bytes) -> Message:
    """The message; compat32 never raises on a malformed header, whoever wrote it."""
    return message_from_bytes(data, policy=compat32)


def read_report(message: Message) -> Report:
    """The report `message` carries: a DSN's worst recipient, or an ARF complaint."""
    if message.get_content_type() != "multipart/report":
        return Report(IGNORED, why="not a delivery report")
    parts = message.get_payload()
    # Only the report's own parts: the returned original, attached after them, is not read.
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, Message):
            continue
        kind = part.get_content_type()
        if kind in ("message/delivery-status", "message/global-delivery-status"):
            return _delivery_status(_field_blocks(part))
        if kind == "message/feedback-report":
            return _feedback(_field_blocks(part))
    return Report(IGNORED, why="a report without delivery status or feedback")


def report_recipients(message: Message, given: Iterable[str] = ()) -> list[str]:
    """Addresses the report was delivered to: `given` (the envelope's) first, then headers."""
    found = [address for address in given if address]
    for name in RECIPIENT_HEADERS:
        values = [str(value) for value in message.get_all(name, [])]
        found += [address for _, address in getaddresses(values) if address]
    return list(dict.fromkeys(found))


def _field_blocks(part: Message) -> list[dict[str, str]]:
    """The groups of `Name: value` fields of a report part, names in lower case."""
    payload = part.get_payload()
    if isinstance(payload, str):  # a transfer encoding kept the parser from reading it
        raw = part.get_payload(decode=True)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else payload
        return _text_blocks(text)
    blocks: list[dict[str, str]] = []
    for item in payload:
        if isinstance(item, Message):
            blocks.append({name.lower(): one_line(str(value)) for name, value in item.items()})
            rest = item.get_payload()
            if isinstance(rest, str) and rest.strip():
                blocks += _text_blocks(rest)
    return blocks


def _text_blocks(text: str) -> list[dict[str, str]]:
    groups = re.split(r"\r?\n[ \t]*\r?\n", text.strip())
    parser = HeaderParser(policy=compat32)
    return [
        {name.lower(): one_line(str(value)) for name, value in parser.parsestr(group).items()}
        for group in groups
        if group.strip()
    ]


def _delivery_status(blocks: list[dict[str, str]]) -> Report:
    recipients = [b for b in blocks if "action" in b or "final-recipient" in b]
    if not recipients:
        return Report(IGNORED, why="a delivery report naming no recipient")
    worst = max(recipients, key=lambda b: _SEVERITY.get(b.get("action", "").lower(), 0))
    action = worst.get("action", "").lower()
    reply = worst.get("diagnostic-code", "")
    status = _status(worst.get("status", ""), reply, action)
    if not status:
        return Report(IGNORED, why=f"a delivery report with action {action or 'none'}")
    if status.startswith("2."):
        return Report(IGNORED, status, reply, why=f"a delivery notice ({action or status})")
    if status.startswith("4."):
        # Action: failed with a 4.x.x status is a relay giving up after its retries: still
        # only a note, since the address itself was never refused.
        return Report(DELAYED, status, reply)
    return Report(HELD if status.startswith("5.7.") else BOUNCED, status, reply)


def _status(field: str, diagnostic: str, action: str) -> str:
    """The enhanced code; a generic x.0.0 yields to a more precise one in the server's reply."""
    match = _STATUS.match(field)
    code = ".".join(match.groups()) if match else ""
    precise = _ENHANCED_IN_TEXT.search(diagnostic)
    if precise and (not code or (code.endswith(".0.0") and precise[1] == code[0])):
        return ".".join(precise.groups())
    if code:
        return code
    # A report must carry a status (RFC 3464); one that only says what happened still counts.
    return {"failed": "5.0.0", "delayed": "4.0.0"}.get(action, "")


def _feedback(blocks: list[dict[str, str]]) -> Report:
    fields = next((b for b in blocks if "feedback-type" in b), {})
    feedback_type = fields.get("feedback-type", "").lower()
    if feedback_type in ("abuse", "fraud", "virus"):
        agent = fields.get("user-agent", "")
        return Report(COMPLAINT, reply=one_line(f"{feedback_type} {agent}".strip()))
    return Report(IGNORED, why=f"a feedback report of type {feedback_type or 'none'}")
