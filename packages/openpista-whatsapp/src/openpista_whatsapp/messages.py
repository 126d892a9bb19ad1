"""Bodies of ``POST /{version}/{phone_number_id}/messages``, within WhatsApp's limits.

Limits (Cloud API reference): text bodies 4,096 characters; interactive bodies 1,024;
reply buttons at most 3 with titles of at most 20 characters; list messages at most 10 rows
(titles 24, descriptions 72, the button label 20); captions 1,024.
"""

from __future__ import annotations

from typing import Any

from openpista.buttons import BUTTONS, button_id
from openpista.models import ApprovalRequest

TEXT_LIMIT = 4096
INTERACTIVE_BODY_LIMIT = 1024
CAPTION_LIMIT = 1024
MAX_BUTTONS = 3
BUTTON_TITLE_LIMIT = 20
MAX_LIST_ROWS = 10
ROW_TITLE_LIMIT = 24
ROW_DESCRIPTION_LIMIT = 72
TEMPLATE_PARAMETER_LIMIT = 1024

Row = tuple[str, str, str]
"""A list row: ``(id, title, description)``."""


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when it was longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _envelope(to: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": kind,
        kind: body,
    }


def text_message(to: str, body: str) -> dict[str, Any]:
    """A text message (``body`` within :data:`TEXT_LIMIT`; split longer ones first)."""
    if not body or len(body) > TEXT_LIMIT:
        raise ValueError(f"a text body needs 1 to {TEXT_LIMIT} characters, not {len(body)}")
    return _envelope(to, "text", {"body": body, "preview_url": False})


def media_message(
    to: str,
    kind: str,
    *,
    media_id: str | None = None,
    link: str | None = None,
    caption: str = "",
    filename: str | None = None,
) -> dict[str, Any]:
    """An image, audio, video or document message, by uploaded ``media_id`` or ``link``."""
    if kind not in ("image", "audio", "video", "document"):
        raise ValueError(f"cannot send media of kind {kind!r}")
    if (media_id is None) == (link is None):
        raise ValueError("give exactly one of media_id and link")
    body: dict[str, Any] = {"id": media_id} if media_id is not None else {"link": link}
    if caption and kind != "audio":
        body["caption"] = clip(caption, CAPTION_LIMIT)
    if filename and kind == "document":
        body["filename"] = filename
    return _envelope(to, kind, body)


def buttons_message(
    to: str, body: str, buttons: list[tuple[str, str]], footer: str = ""
) -> dict[str, Any]:
    """Interactive reply buttons (quick replies): ``buttons`` is ``[(id, title), ...]``."""
    if not 1 <= len(buttons) <= MAX_BUTTONS:
        raise ValueError(f"reply buttons: 1 to {MAX_BUTTONS}, not {len(buttons)}")
    interactive: dict[str, Any] = {
        "type": "button",
        "body": {"text": clip(body, INTERACTIVE_BODY_LIMIT)},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": bid, "title": clip(title, BUTTON_TITLE_LIMIT)}}
                for bid, title in buttons
            ]
        },
    }
    if footer:
        interactive["footer"] = {"text": clip(footer, 60)}
    return _envelope(to, "interactive", interactive)


def list_message(
    to: str, body: str, button: str, sections: list[tuple[str, list[Row]]]
) -> dict[str, Any]:
    """An interactive list: ``sections`` is ``[(title, [(id, title, description), ...])]``."""
    rows = sum(len(r) for _, r in sections)
    if not sections or not 1 <= rows <= MAX_LIST_ROWS:
        raise ValueError(f"list messages need 1 to {MAX_LIST_ROWS} rows, not {rows}")
    return _envelope(
        to,
        "interactive",
        {
            "type": "list",
            "body": {"text": clip(body, INTERACTIVE_BODY_LIMIT)},
            "action": {
                "button": clip(button, BUTTON_TITLE_LIMIT),
                "sections": [
                    {
                        "title": clip(title, ROW_TITLE_LIMIT),
                        "rows": [
                            {
                                "id": rid,
                                "title": clip(rtitle, ROW_TITLE_LIMIT),
                                **(
                                    {"description": clip(desc, ROW_DESCRIPTION_LIMIT)}
                                    if desc
                                    else {}
                                ),
                            }
                            for rid, rtitle, desc in rows
                        ],
                    }
                    for title, rows in sections
                ],
            },
        },
    )


def template_message(
    to: str, name: str, language: str, parameters: list[str] | None = None
) -> dict[str, Any]:
    """A template message (the only kind allowed outside the 24-hour window); each of
    ``parameters`` fills one ``{{n}}`` of the template's body."""
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if parameters:
        template["components"] = [
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": clip(p, TEMPLATE_PARAMETER_LIMIT)} for p in parameters
                ],
            }
        ]
    return _envelope(to, "template", template)


def approval_message(to: str, request: ApprovalRequest) -> dict[str, Any]:
    """An approval request with Approve / Deny buttons (ids ``approve:<id>``, ``deny:<id>``)."""
    return buttons_message(
        to,
        request.prompt(),
        [(button_id(verb, request.id), label) for verb, label in BUTTONS],
        footer=f"Approval {request.id}",
    )


def media_kind(mime_type: str) -> str:
    """Which message type carries a file of ``mime_type``."""
    major = mime_type.split("/", 1)[0]
    return major if major in ("image", "audio", "video") else "document"
