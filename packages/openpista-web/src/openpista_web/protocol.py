"""The JSON frames of the web channel's WebSocket (docs/channels/web.md is the reference).

Client to server (text frames, one JSON object each)::

    {"type": "message", "text": "...", "attachments": [{"name", "mime_type", "data"}]}
    {"type": "approval", "id": "...", "approve": true}
    {"type": "ping"}                        # answered with {"type": "pong"}

Server to client: ``hello`` (once per connection), ``response`` (a core outbound message in
``"response"``, told apart by its ``kind``, with a sequence number ``seq`` for resuming),
``history``, ``notice``,
``pong`` and ``error``. Bad frames (malformed or deeply nested JSON included) get an
``error`` frame; the connection stays open.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

from openpista.jsonsafe import JsonInputError, loads
from openpista.models import Attachment, Outbound

CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
APPROVAL_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class FrameError(ValueError):
    """A client frame that cannot be used; the message is shown to the client."""


@dataclass(frozen=True)
class Limits:
    """Size limits applied to client frames."""

    max_frame_bytes: int
    max_image_bytes: int
    max_attachments: int


@dataclass(frozen=True)
class MessageFrame:
    """A chat message (text and/or images) for the agent."""

    text: str
    attachments: list[Attachment] = field(default_factory=list)
    images: list[bytes] = field(default_factory=list)  # decoded, parallel to attachments


@dataclass(frozen=True)
class ApprovalFrame:
    """The answer to an approval request."""

    id: str
    approve: bool

    def as_text(self) -> str:
        """The text command the gateway's approval broker understands."""
        return f"/{'approve' if self.approve else 'deny'} {self.id}"


@dataclass(frozen=True)
class PingFrame:
    """An application-level heartbeat from the client."""


ClientFrame = MessageFrame | ApprovalFrame | PingFrame


def parse_frame(raw: str | bytes, limits: Limits) -> ClientFrame:
    """Validate one client frame; raises :class:`FrameError` with a message for the client."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > limits.max_frame_bytes:
        raise FrameError(f"frame too large: {size} bytes, the limit is {limits.max_frame_bytes}")
    try:
        data = loads(raw)
    except JsonInputError as exc:  # not JSON, or nested too deeply: never a RecursionError
        raise FrameError(f"malformed frame: {exc}") from None
    if not isinstance(data, dict):
        raise FrameError("malformed frame: expected a JSON object")
    kind = data.get("type")
    if kind == "message":
        return _message(data, limits)
    if kind == "approval":
        approval_id, approve = data.get("id"), data.get("approve")
        if not isinstance(approval_id, str) or not APPROVAL_ID.match(approval_id):
            raise FrameError("approval: 'id' must be the id of the request")
        if not isinstance(approve, bool):
            raise FrameError("approval: 'approve' must be true or false")
        return ApprovalFrame(approval_id, approve)
    if kind == "ping":
        return PingFrame()
    shown = kind if isinstance(kind, str) and len(kind) <= 40 else "?"
    raise FrameError(f"unknown frame type {shown!r}: expected message, approval or ping")


def _message(data: dict[str, Any], limits: Limits) -> MessageFrame:
    text = data.get("text", "")
    if not isinstance(text, str):
        raise FrameError("message: 'text' must be a string")
    raw_attachments = data.get("attachments", [])
    if not isinstance(raw_attachments, list):
        raise FrameError("message: 'attachments' must be a list")
    if len(raw_attachments) > limits.max_attachments:
        raise FrameError(f"message: at most {limits.max_attachments} attachments")
    attachments, images = [], []
    for index, item in enumerate(raw_attachments):
        attachment, image = _image(item, index, limits)
        attachments.append(attachment)
        images.append(image)
    if not text.strip() and not attachments:
        raise FrameError("message: empty (send text or an image)")
    return MessageFrame(text.strip(), attachments, images)


def _image(item: Any, index: int, limits: Limits) -> tuple[Attachment, bytes]:
    where = f"attachment {index + 1}"
    if not isinstance(item, dict):
        raise FrameError(f"{where}: expected an object with name, mime_type and data")
    name, mime, data = item.get("name") or "image", item.get("mime_type"), item.get("data")
    if not isinstance(name, str) or not isinstance(mime, str) or not isinstance(data, str):
        raise FrameError(f"{where}: name, mime_type and data must be strings")
    if not re.fullmatch(r"image/[a-z0-9.+-]{1,40}", mime):
        raise FrameError(f"{where}: only images are accepted, not {mime[:60]!r}")
    if len(data) > (limits.max_image_bytes * 4) // 3 + 4:
        raise FrameError(f"{where}: image too large, the limit is {limits.max_image_bytes} bytes")
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise FrameError(f"{where}: data is not valid base64") from None
    if len(decoded) > limits.max_image_bytes:
        raise FrameError(f"{where}: image too large, the limit is {limits.max_image_bytes} bytes")
    safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:80] or "image"
    return Attachment(name=safe_name, mime_type=mime, data=data), decoded


def encode(kind: str, **fields: Any) -> str:
    """A server frame as JSON text."""
    return json.dumps({"type": kind, **fields}, ensure_ascii=False, separators=(",", ":"))


def response_fields(message: Outbound) -> dict[str, Any]:
    """The ``response`` frame's payload: the core model's wire form."""
    return {"response": message.model_dump(mode="json")}
