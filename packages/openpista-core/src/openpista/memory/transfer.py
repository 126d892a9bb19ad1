"""A session as a document: the JSON that ``openpista memory export`` writes and ``import``
reads back (every message exactly as stored), and its Markdown rendering for people."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from openpista.memory.checks import MemoryStoreError
from openpista.models import Message

FORMAT = "openpista-session"
VERSION = 1


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str
    version: int
    id: str
    title: str | None
    created_at: datetime
    updated_at: datetime
    messages: list[Message]


@dataclass(frozen=True, slots=True)
class SessionDocument:
    """A session read from an export: what :meth:`MemoryStore.import_session` stores."""

    id: str
    title: str | None
    created_at: datetime
    updated_at: datetime
    messages: list[Message]


def session_json(document: SessionDocument) -> dict[str, Any]:
    """``document`` as the export's JSON object."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "id": document.id,
        "title": document.title,
        "created_at": document.created_at.isoformat(),
        "updated_at": document.updated_at.isoformat(),
        "messages": [m.model_dump(mode="json", exclude={"attachments"}) for m in document.messages],
    }


def read_session(data: object) -> SessionDocument:
    """The session in an export's JSON object; raises :class:`MemoryStoreError` saying
    what is wrong with anything else."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise MemoryStoreError(f'not an openpista session export (no "format": "{FORMAT}")')
    if data.get("version") != VERSION:
        raise MemoryStoreError(
            f"session export version {data.get('version')!r} is not supported (only {VERSION})"
        )
    try:
        parsed = _Document.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise MemoryStoreError(f"invalid session export at {where}: {first['msg']}") from None
    return SessionDocument(
        parsed.id, parsed.title, parsed.created_at, parsed.updated_at, parsed.messages
    )


def session_markdown(document: SessionDocument) -> str:
    """``document`` as Markdown: a heading, then each message under its role and time
    (tool calls and results in code blocks)."""
    lines = [f"# {document.title or document.id}", "", f"Session `{document.id}`", ""]
    for message in document.messages:
        lines.append(f"## {message.role} · {message.created_at:%Y-%m-%d %H:%M:%S} UTC")
        lines.append("")
        if message.content:
            lines += [message.content, ""]
        for call in message.tool_calls:
            lines += [f"Tool call `{call.name}`:", "", *_fenced(call.arguments), ""]
        if message.tool_result is not None:
            result = message.tool_result
            state = " (error)" if result.is_error else ""
            lines += [f"Result of `{result.name}`{state}:", "", *_fenced(result.output), ""]
    return "\n".join(lines).rstrip() + "\n"


def _fenced(value: object) -> list[str]:
    """``value`` in a code block whose fence is longer than any backtick run inside."""
    import json

    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2)
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return [fence, text, fence]
