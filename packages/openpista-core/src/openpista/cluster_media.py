"""The files of a handed-over message travel with it through PostgreSQL (docs/scale-out.md).

A channel saves what a user sends under its :attr:`~openpista.channels.ChannelAdapter.media_dir`
and names the file in ``Attachment.path``. In cluster mode such a message may run on another
replica, which cannot open this machine's files: :func:`pack` puts each file's bytes in the
stored event itself (``files``: the attachment's position and its base64 bytes; its ``path``
left out), so they are deleted with the event. Only regular files under the channel's media
directory travel, each up to its ``max_media_bytes``; a message with any other saved file is
not packed (it waits for its session's lease where it arrived).

The replica running the turn trusts no path from the table: :func:`unpack` refuses a stored
event whose attachment names a ``path`` (:class:`ForgedEventError`, no file opened) and
writes each file's bytes under its own media directory, named with
:func:`openpista.files.safe_name`, before the turn sees the new path.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from openpista.files import ConfinementError, read_confined, safe_name, write_private
from openpista.models import ChannelEvent

__all__ = ["ForgedEventError", "pack", "unpack"]

Media = Callable[[str], tuple[Path, int]]
"""A channel id's media directory on this replica, and the largest file it takes."""
FILES = "files"
"""The key of the stored event that holds its files' bytes."""


class ForgedEventError(ValueError):
    """A stored event that no replica wrote: a path of another machine, malformed files."""


def pack(event: ChannelEvent, media_dir: Path | None, limit: int) -> dict[str, Any] | None:
    """``event`` as stored, with the bytes of its saved files; ``None`` if one of them
    cannot travel (no ``media_dir``, outside it, not a regular file, over ``limit``)."""
    stored = event.model_dump(mode="json")
    files: list[dict[str, Any]] = []
    for position, attachment in enumerate(event.attachments):
        if attachment.path is None:
            continue
        if media_dir is None:
            return None
        root = media_dir.expanduser()
        try:
            relative = Path(attachment.path).relative_to(root)
            data = read_confined(root, str(relative), limit)
        except (ValueError, OSError, ConfinementError):
            return None
        files.append({"attachment": position, "data": base64.b64encode(data).decode()})
        stored["attachments"][position]["path"] = None
    if files:
        stored[FILES] = files
    return stored


def unpack(stored: Any, media: Media, folder: str) -> ChannelEvent:
    """The event of ``stored`` (from the table), its files written under
    ``DIR/handed-over/folder`` (``DIR, limit = media(channel_id)``); :class:`ForgedEventError`
    if no replica wrote it."""
    if not isinstance(stored, dict):
        raise ForgedEventError("it is not an event")
    files = stored.pop(FILES, [])
    try:
        event = ChannelEvent.model_validate(stored)
    except ValidationError as exc:
        raise ForgedEventError(f"it is not an event: {exc.error_count()} error(s)") from None
    if any(attachment.path is not None for attachment in event.attachments):
        raise ForgedEventError("it names a file path (paths are never taken from the table)")
    if not isinstance(files, list):
        raise ForgedEventError("its files are not a list")
    if not files:
        return event
    media_dir, limit = media(event.channel_id)
    decoded = dict(_file(item, len(event.attachments), limit) for item in files)
    if len(decoded) < len(files):
        raise ForgedEventError("it holds one attachment's file twice")
    directory = media_dir.expanduser() / "handed-over" / safe_name(folder)
    attachments = list(event.attachments)
    for position, data in decoded.items():  # all checked: only now is anything written
        attachment = attachments[position]
        target = directory / f"{position}-{safe_name(attachment.name)}"
        write_private(target, data)
        attachments[position] = attachment.model_copy(update={"path": str(target)})
    return event.model_copy(update={"attachments": attachments})


def _file(item: Any, count: int, limit: int) -> tuple[int, bytes]:
    """The attachment position and bytes of one stored file; checked before decoding."""
    if not isinstance(item, dict):
        raise ForgedEventError("a file is not an object")
    position, data = item.get("attachment"), item.get("data")
    if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position < count:
        raise ForgedEventError("a file belongs to no attachment")
    if not isinstance(data, str) or len(data) > (limit + 2) // 3 * 4:
        raise ForgedEventError(f"a file is not base64 of at most {limit:,} bytes")
    try:
        return position, base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ForgedEventError("a file is not valid base64") from None
