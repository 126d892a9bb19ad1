"""What the LLM gets of an MCP result: text cut to size, images as attachments.

``isError`` results raise :class:`~openpista.tools.ToolError`, so the registry hands them to
the LLM as error results like any failing tool.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mcp_types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    GetPromptResult,
    ImageContent,
    ReadResourceResult,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

from openpista.models import Attachment
from openpista.tools import CapturedText, ToolError, ToolOutput

MAX_ATTACHMENT_BYTES = 5_000_000
"""Larger images are named to the LLM, not attached."""

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}


def cut(text: str, max_chars: int) -> str:
    """``text`` with its middle dropped past ``max_chars``, marked like ``system.run`` output."""
    if len(text) <= max_chars:
        return text
    tail = max_chars // 2
    head = max_chars - tail
    dropped = len(text) - max_chars
    return CapturedText(head=text[:head], tail=text[len(text) - tail :], dropped=dropped).render()


def tool_output(result: CallToolResult, label: str, max_chars: int) -> ToolOutput:
    """The text and attachments of one tool result; raises ToolError for ``isError``."""
    text, attachments = _render(result.content, label)
    if not text and result.structured_content is not None:
        text = json.dumps(result.structured_content, ensure_ascii=False, indent=1)
    if result.is_error:
        raise ToolError(cut(text or f"{label} failed (no details given)", max_chars))
    return ToolOutput(text=cut(text or "(no output)", max_chars), attachments=attachments)


def resource_output(result: ReadResourceResult, label: str, max_chars: int) -> ToolOutput:
    """The contents of one read resource: text, images attached, other blobs named."""
    parts: list[str] = []
    attachments: list[Attachment] = []
    for index, contents in enumerate(result.contents):
        parts.append(_contents(contents, f"{label}-{index}", attachments))
    return ToolOutput(text=cut("\n".join(parts) or "(empty)", max_chars), attachments=attachments)


def prompt_messages(result: GetPromptResult, label: str) -> tuple[str, list[Attachment]]:
    """A rendered prompt as one message: its messages' text in order (the assistant's
    marked as such), their images as attachments."""
    parts: list[str] = []
    attachments: list[Attachment] = []
    for index, message in enumerate(result.messages):
        text, found = _render([message.content], f"{label}-{index}")
        parts.append(text if message.role == "user" else f"(assistant) {text}")
        attachments.extend(found)
    return "\n\n".join(parts), attachments


def _render(content: Sequence[Any], label: str) -> tuple[str, list[Attachment]]:
    parts: list[str] = []
    attachments: list[Attachment] = []
    for index, block in enumerate(content):
        name = f"{label}-{index}"
        if isinstance(block, TextContent):
            parts.append(block.text)
        elif isinstance(block, ImageContent):
            parts.append(_image(block.data, block.mime_type, name, attachments))
        elif isinstance(block, AudioContent):
            parts.append(f"[audio {block.mime_type}, {_size(block.data)}: not shown]")
        elif isinstance(block, EmbeddedResource):
            parts.append(_contents(block.resource, name, attachments))
        elif isinstance(block, ResourceLink):
            parts.append(f"[resource {block.uri}: {block.name}; read it with the read tool]")
        else:
            parts.append(f"[{getattr(block, 'type', type(block).__name__)} content: not shown]")
    return "\n".join(parts), attachments


def _contents(
    contents: TextResourceContents | BlobResourceContents, name: str, attachments: list[Attachment]
) -> str:
    mime = contents.mime_type or "application/octet-stream"
    if isinstance(contents, TextResourceContents):
        return f"--- {contents.uri} ({mime}) ---\n{contents.text}"
    if mime.startswith("image/"):
        return f"--- {contents.uri} ---\n" + _image(contents.blob, mime, name, attachments)
    return f"[{contents.uri}: {mime}, {_size(contents.blob)}: binary, not shown]"


def _image(data: str, mime: str, name: str, attachments: list[Attachment]) -> str:
    size = len(data) * 3 // 4
    filename = f"{name}.{_EXTENSIONS.get(mime, 'bin')}"
    if size > MAX_ATTACHMENT_BYTES:
        return f"[image {filename}, {_size(data)}: too large to attach]"
    attachments.append(Attachment(name=filename, mime_type=mime, data=data))
    return f"[image {filename} attached]"


def _size(data: str) -> str:
    return f"{len(data) * 3 // 4:,} bytes"
