"""Meta's webhook payload in the channel's terms: messages, status callbacks, the rest.

One POST may carry several entries, each with several changes; a change of field
``messages`` holds ``messages`` (what users sent), ``statuses`` (what happened to what we
sent: sent, delivered, read, failed), ``errors`` (problems of the business number itself,
such as rate-limit warnings) or several of these. Anything this module does not understand is
listed in :attr:`Delivery.ignored` with a short reason, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MEDIA_KINDS = ("image", "audio", "video", "document", "sticker")
APPROVAL_BUTTONS = {"approve": "/approve", "deny": "/deny"}


@dataclass(frozen=True)
class MediaRef:
    """A media object of a message: fetched later through the Graph API by ``id``."""

    id: str
    mime_type: str
    filename: str | None = None


@dataclass(frozen=True)
class Inbound:
    """One message a user sent to one of our numbers, already put into words.

    ``text`` is what the agent reads: the body, a caption, a description of a location or
    contact card, the title of the pressed button (``/approve ID`` for approval buttons).
    ``kind`` is WhatsApp's message type; ``reaction`` messages never start a turn.
    """

    phone_number_id: str
    sender: str
    message_id: str
    kind: str
    text: str
    timestamp: float | None = None
    name: str | None = None
    media: MediaRef | None = None
    reply_id: str | None = None
    context_id: str | None = None


@dataclass(frozen=True)
class Status:
    """A status callback for a message we sent."""

    phone_number_id: str
    message_id: str
    status: str
    recipient: str
    timestamp: float | None
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ReportedError:
    """A system-level error Meta reports in a change's ``value.errors`` (not tied to one
    message): its ``code``, ``title`` and ``error_data.details``, cut to a readable size."""

    phone_number_id: str
    code: int | None
    title: str
    details: str


@dataclass
class Delivery:
    """Everything one webhook POST carried."""

    messages: list[Inbound] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)
    errors: list[ReportedError] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def parse_webhook(data: Any) -> Delivery:
    """Read a decoded webhook body; never raises on unexpected shapes."""
    delivery = Delivery()
    if not isinstance(data, dict):
        delivery.ignored.append("the body is not a JSON object")
        return delivery
    if data.get("object") != "whatsapp_business_account":
        delivery.ignored.append(f"object {str(data.get('object'))[:40]!r} is not WhatsApp")
        return delivery
    for entry in _dicts(data.get("entry")):
        for change in _dicts(entry.get("changes")):
            if change.get("field") != "messages":
                delivery.ignored.append(f"change field {str(change.get('field'))[:40]!r}")
                continue
            _read_change(change.get("value"), delivery)
    return delivery


def _read_change(value: Any, delivery: Delivery) -> None:
    if not isinstance(value, dict):
        delivery.ignored.append("a change without a value object")
        return
    metadata = _obj(value.get("metadata"))
    number = str(metadata.get("phone_number_id") or "")
    errors = [_reported_error(number, error) for error in _dicts(value.get("errors"))]
    delivery.errors.extend(errors)
    if not number:
        if not errors:
            delivery.ignored.append("a change without metadata.phone_number_id")
        return
    names = {
        str(c.get("wa_id")): str((c.get("profile") or {}).get("name") or "") or None
        for c in _dicts(value.get("contacts"))
        if isinstance(c.get("profile") or {}, dict)
    }
    for message in _dicts(value.get("messages")):
        try:
            inbound = _read_message(number, message, names)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            kind = str(message.get("type"))[:40]
            delivery.ignored.append(f"malformed {kind!r} message: {type(exc).__name__}: {exc}")
            continue
        if isinstance(inbound, str):
            delivery.ignored.append(inbound)
        else:
            delivery.messages.append(inbound)
    for status in _dicts(value.get("statuses")):
        if not status.get("id") or not status.get("status"):
            delivery.ignored.append("a status without id or status")
            continue
        delivery.statuses.append(
            Status(
                phone_number_id=number,
                message_id=str(status["id"]),
                status=str(status["status"]),
                recipient=str(status.get("recipient_id") or ""),
                timestamp=_timestamp(status.get("timestamp")),
                errors=list(_dicts(status.get("errors"))),
            )
        )


def _read_message(
    number: str, message: dict[str, Any], names: dict[str, str | None]
) -> Inbound | str:
    """The message as :class:`Inbound`, or a string saying why it is ignored."""
    sender = str(message["from"])
    message_id = str(message["id"])
    kind = str(message.get("type") or "")
    body = _obj(message.get(kind))
    context = _obj(message.get("context"))
    common: dict[str, Any] = {
        "phone_number_id": number,
        "sender": sender,
        "message_id": message_id,
        "kind": kind,
        "timestamp": _timestamp(message.get("timestamp")),
        "name": names.get(sender),
        "context_id": str(context["id"]) if context.get("id") else None,
    }
    if kind == "text":
        return Inbound(text=str(body["body"]), **common)
    if kind in MEDIA_KINDS:
        media = MediaRef(
            id=str(body["id"]),
            mime_type=str(body.get("mime_type") or "application/octet-stream"),
            filename=str(body["filename"]) if body.get("filename") else None,
        )
        return Inbound(text=_media_text(kind, body), media=media, **common)
    if kind == "location":
        return Inbound(text=_location_text(body), **common)
    if kind == "contacts":
        return Inbound(text=_contacts_text(message["contacts"]), **common)
    if kind == "interactive":
        reply_type = str(body["type"])
        if reply_type not in ("button_reply", "list_reply"):
            return f"interactive reply of type {reply_type[:40]!r} from message {message_id}"
        reply = _obj(body[reply_type])
        reply_id, title = str(reply["id"]), str(reply.get("title") or "")
        return Inbound(text=_reply_text(reply_id, title), reply_id=reply_id, **common)
    if kind == "button":  # a quick-reply button of a template message
        return Inbound(text=str(body["text"]), reply_id=str(body.get("payload") or ""), **common)
    if kind == "reaction":
        emoji = str(body.get("emoji") or "")
        target = str(body.get("message_id") or "")
        text = f"reacted {emoji} to {target}" if emoji else f"removed a reaction from {target}"
        return Inbound(text=text, **{**common, "context_id": target or None})
    errors = [str(e.get("title") or e.get("message") or e) for e in _dicts(message.get("errors"))]
    detail = f" ({'; '.join(errors)[:200]})" if errors else ""
    return f"message {message_id} of type {kind[:40]!r} from {sender}{detail}"


def _reported_error(number: str, error: dict[str, Any]) -> ReportedError:
    code = error.get("code")
    title = error.get("title") or error.get("message") or "no title"
    details = _obj(error.get("error_data")).get("details") or ""
    return ReportedError(
        phone_number_id=number[:40],
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        title=_line(str(title), 200),
        details=_line(str(details), 500),
    )


def _line(text: str, limit: int) -> str:
    """``text`` on one line, at most ``limit`` characters (Meta's texts go into logs)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _reply_text(reply_id: str, title: str) -> str:
    verb, _, approval = reply_id.partition(":")
    if verb in APPROVAL_BUTTONS and approval:
        return f"{APPROVAL_BUTTONS[verb]} {approval}"
    return title or reply_id


def _media_text(kind: str, body: dict[str, Any]) -> str:
    caption = str(body.get("caption") or "").strip()
    if caption:
        return caption
    if kind == "audio" and body.get("voice"):
        return "[voice message]"
    if kind == "document" and body.get("filename"):
        return f"[document {body['filename']}]"
    return f"[{kind}]"


def _location_text(body: dict[str, Any]) -> str:
    where = ", ".join(str(body[k]) for k in ("name", "address") if body.get(k))
    coordinates = f"{float(body['latitude'])}, {float(body['longitude'])}"
    return f"📍 Location: {where} ({coordinates})" if where else f"📍 Location: {coordinates}"


def _contacts_text(contacts: list[Any]) -> str:
    cards = []
    for card in _dicts(contacts):
        name = _obj(card.get("name"))
        label = str(name.get("formatted_name") or name.get("first_name") or "unnamed")
        phones = [str(p.get("phone") or p.get("wa_id")) for p in _dicts(card.get("phones"))]
        emails = [str(e.get("email")) for e in _dicts(card.get("emails")) if e.get("email")]
        details = ", ".join(phones + emails)
        cards.append(f"{label} ({details})" if details else label)
    if not cards:
        raise ValueError("a contacts message without contacts")
    return "👤 Contact: " + "; ".join(cards)


def _timestamp(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
