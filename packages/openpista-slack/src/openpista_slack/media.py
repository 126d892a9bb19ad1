"""Files users share in Slack: downloaded with the bot token into ``files_dir`` and handed to
the agent as attachments (pictures small enough also inline, for the LLM to see).

The bot token goes only to Slack's file host (``files.slack.com``) or, when ``api_base`` is
set, to that host: a file URL pointing anywhere else is refused, so an event can never make
openpista send its token to a server of someone's choosing. Sizes are checked before
(Slack's ``size``) and while downloading (``max_download_bytes``).
"""

from __future__ import annotations

import base64
import mimetypes
import secrets
import urllib.parse
from typing import TYPE_CHECKING, Any

from openpista.files import safe_name
from openpista.models import Attachment

if TYPE_CHECKING:
    from openpista_slack.settings import SlackSettings

FILE_HOST = "files.slack.com"


class MediaError(Exception):
    """A shared file could not be taken; the message says why (one line, no token)."""


def allowed_host(url: str, settings: SlackSettings) -> bool:
    """Whether the bot token may be sent to ``url``."""
    parts = urllib.parse.urlsplit(url)
    if settings.api_base is not None:
        api = urllib.parse.urlsplit(settings.api_base)
        return (parts.scheme, parts.netloc) == (api.scheme, api.netloc)
    return parts.scheme == "https" and parts.hostname == FILE_HOST


async def download(files: list[Any], settings: SlackSettings, folder: str) -> list[Attachment]:
    """Save every file of a message under ``files_dir/folder``; their attachments."""
    import aiohttp

    found = [f for f in files if isinstance(f, dict)]
    if len(found) > settings.max_files:
        raise MediaError(f"at most {settings.max_files} files per message")
    attachments = []
    timeout = aiohttp.ClientTimeout(total=settings.request_timeout)
    headers = {"Authorization": f"Bearer {settings.secret('bot_token')}"}
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
        for item in found:
            attachments.append(await _one(session, item, settings, folder))
    return attachments


async def _one(
    session: Any, item: dict[str, Any], settings: SlackSettings, folder: str
) -> Attachment:
    name = safe_name(str(item.get("name") or item.get("id") or "file"), 120)
    url = str(item.get("url_private_download") or item.get("url_private") or "")
    limit = settings.max_download_bytes
    size = item.get("size")
    if isinstance(size, int) and size > limit:
        raise MediaError(f"{name} is larger than {limit} bytes")
    if not allowed_host(url, settings):
        raise MediaError(f"{name}: not a Slack file URL")
    data = bytearray()
    async with session.get(url, allow_redirects=False) as response:
        if response.status != 200:
            raise MediaError(f"{name}: Slack answered {response.status}")
        async for chunk in response.content.iter_chunked(64 * 1024):
            data += chunk
            if len(data) > limit:
                raise MediaError(f"{name} is larger than {limit} bytes")
    mime = str(item.get("mimetype") or mimetypes.guess_type(name)[0] or "application/octet-stream")
    directory = settings.downloads / safe_name(folder, 120)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{secrets.token_hex(4)}-{name}"
    path.write_bytes(bytes(data))
    inline = mime.startswith("image/") and len(data) <= settings.inline_image_bytes
    encoded = base64.b64encode(bytes(data)).decode() if inline else None
    return Attachment(name=name, mime_type=mime, path=str(path), data=encoded)
