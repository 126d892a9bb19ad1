"""Media both ways: incoming files saved for the agent, outgoing attachments uploaded.

Incoming: media id -> ``GET /{media_id}`` (URL, type, size) -> ``GET url`` with the token ->
bytes, saved as ``<home>/whatsapp/media/<message id><ext>`` (mode 0600) and handed to the
agent as an :class:`~openpista.models.Attachment` with its ``path``; pictures up to
``max_inline_image_bytes`` also carry the bytes as base64 so that the LLM sees them.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
from pathlib import Path
from typing import Any

from openpista.files import write_private
from openpista.models import Attachment
from openpista_whatsapp.graph import GraphClient, GraphError
from openpista_whatsapp.messages import media_kind, media_message
from openpista_whatsapp.payload import Inbound, MediaRef
from openpista_whatsapp.settings import WhatsAppSettings

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


async def fetch_attachment(
    graph: GraphClient, config: WhatsAppSettings, message: Inbound, media: MediaRef, folder: Path
) -> Attachment:
    """Download ``media`` of ``message`` into ``folder``; :class:`GraphError` when it fails
    or the file is larger than ``max_media_bytes``."""
    info = await graph.media_info(media.id)
    size = _size(info.get("file_size"))
    if size is not None and size > config.max_media_bytes:
        raise GraphError(
            f"the {message.kind} is {size} bytes, over the limit of {config.max_media_bytes} "
            "(channels.whatsapp.max_media_bytes)"
        )
    data = await graph.download(str(info["url"]), config.max_media_bytes)
    mime_type = str(info.get("mime_type") or media.mime_type).split(";")[0].strip()
    extension = mimetypes.guess_extension(mime_type) or ".bin"
    name = media.filename or f"{message.kind}{extension}"
    path = folder / (_UNSAFE.sub("_", message.message_id)[:120] + extension)
    write_private(path, data)
    inline = mime_type.startswith("image/") and len(data) <= config.max_inline_image_bytes
    return Attachment(
        name=name,
        mime_type=mime_type,
        path=str(path),
        data=base64.b64encode(data).decode() if inline else None,
    )


async def attachment_message(
    graph: GraphClient, phone_number_id: str, to: str, attachment: Attachment, caption: str = ""
) -> dict[str, Any]:
    """The message body that sends ``attachment`` (uploaded first unless it is a URL)."""
    kind = media_kind(attachment.mime_type)
    filename = attachment.name
    if attachment.data is None and attachment.path is None and attachment.url:
        return media_message(to, kind, link=attachment.url, caption=caption, filename=filename)
    data = _bytes(attachment)
    media_id = await graph.upload_media(phone_number_id, data, attachment.mime_type, filename)
    return media_message(to, kind, media_id=media_id, caption=caption, filename=filename)


def _bytes(attachment: Attachment) -> bytes:
    if attachment.data is not None:
        try:
            return base64.b64decode(attachment.data, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"attachment {attachment.name!r} has invalid base64 data") from None
    if attachment.path is not None:
        try:
            return Path(attachment.path).read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read attachment {attachment.path}: {exc.strerror}") from None
    raise ValueError(f"attachment {attachment.name!r} has no data, path or url")


def _size(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
