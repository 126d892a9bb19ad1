"""Files between Telegram and the agent: received photos and documents are saved under
``files_dir`` and become attachments; attachments of answers become photos or documents."""

from __future__ import annotations

import base64
import io
import mimetypes
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from openpista.files import safe_name
from openpista.models import Attachment

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer
    from aiogram import Bot
    from aiogram.types import Message

    from openpista_telegram.api import Retrying
    from openpista_telegram.settings import TelegramSettings

# What sendPhoto takes; other pictures (SVG, TIFF, ...) go as documents.
PHOTO_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
PHOTO_LIMIT = 10 * 1024 * 1024


class MediaError(Exception):
    """A received file could not be taken (too big, download failed); the message says why."""


@dataclass(frozen=True)
class _Incoming:
    file_id: str
    name: str
    mime_type: str
    size: int | None


def incoming_files(message: Message) -> list[_Incoming]:
    """The files a message carries: its largest photo size and its document."""
    found = []
    if message.photo:
        photo = message.photo[-1]
        found.append(
            _Incoming(
                photo.file_id, f"photo-{photo.file_unique_id}.jpg", "image/jpeg", photo.file_size
            )
        )
    if message.document:
        doc = message.document
        name = safe_name(doc.file_name or f"document-{doc.file_unique_id}")
        mime = doc.mime_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        found.append(_Incoming(doc.file_id, name, mime, doc.file_size))
    return found


async def download(
    bot: Bot, message: Message, settings: TelegramSettings, retrying: Retrying
) -> list[Attachment]:
    """Save the message's files under ``files_dir/<chat>/`` and describe them as attachments
    (pictures small enough also inline, for the LLM to see)."""
    attachments = []
    for item in incoming_files(message):
        limit = settings.max_download_bytes
        if item.size is not None and item.size > limit:
            raise MediaError(f"{item.name} is {_mb(item.size)}; the limit is {_mb(limit)}")
        info = await retrying.call(partial(bot.get_file, item.file_id), "getFile")
        if info.file_size is not None and info.file_size > limit:
            raise MediaError(f"{item.name} is {_mb(info.file_size)}; the limit is {_mb(limit)}")
        if not info.file_path:
            raise MediaError(f"Telegram gave no download path for {item.name}")
        folder = settings.downloads / str(message.chat.id)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = folder / f"{message.message_id}-{item.name}"
        await retrying.call(
            partial(_download_capped, bot, info.file_path, target, item.name, limit),
            "file download",
        )
        data = None
        if item.mime_type.startswith("image/"):
            size = target.stat().st_size
            if size <= settings.inline_image_bytes:
                data = base64.b64encode(target.read_bytes()).decode()
        attachments.append(
            Attachment(name=item.name, mime_type=item.mime_type, path=str(target), data=data)
        )
    return attachments


async def _download_capped(bot: Bot, path: str, target: Path, name: str, limit: int) -> None:
    """Stream ``path`` into ``target``, refusing it once more than ``limit`` bytes arrived
    (whatever size Telegram reported); a failed download leaves no file behind."""
    with _CappedFile(target, name, limit) as sink:
        try:
            await bot.download_file(path, sink, seek=False)
        except BaseException:
            sink.discard()
            raise


class _CappedFile(io.FileIO):
    """A file opened for writing that raises :class:`MediaError` past ``limit`` bytes."""

    def __init__(self, path: Path, name: str, limit: int) -> None:
        super().__init__(path, "wb")
        self.display_name, self.limit, self.received = name, limit, 0

    def write(self, data: ReadableBuffer, /) -> int:
        self.received += len(memoryview(data))
        if self.received > self.limit:
            raise MediaError(f"{self.display_name} is larger than the limit of {_mb(self.limit)}")
        return super().write(data)

    def discard(self) -> None:
        """Close and delete the (partial) file."""
        self.close()
        Path(self.name).unlink(missing_ok=True)


def outgoing(attachment: Attachment) -> tuple[str, bytes | str]:
    """``(method, content)`` to send an answer's attachment: ``sendPhoto`` for pictures
    Telegram shows inline, ``sendDocument`` otherwise; content is the bytes or a URL."""
    if attachment.data is not None:
        content: bytes | str = base64.b64decode(attachment.data)
    elif attachment.path:
        content = Path(attachment.path).expanduser().read_bytes()
    elif attachment.url:
        content = attachment.url
    else:
        raise MediaError(f"{attachment.name} has no content")
    is_photo = attachment.mime_type in PHOTO_TYPES
    if isinstance(content, bytes) and len(content) > PHOTO_LIMIT:
        is_photo = False
    return ("sendPhoto" if is_photo else "sendDocument"), content


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"
