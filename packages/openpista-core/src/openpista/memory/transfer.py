"""A session as a document: the JSON that ``openpista memory export`` writes and ``import``
reads back (every message exactly as stored, with the person who wrote each user message
where that is known), and its Markdown rendering for people."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from openpista.memory.checks import MemoryStoreError
from openpista.memory.people import PERSON_MAX_LENGTH, check_person
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
    """A session read from an export: what :meth:`MemoryStore.import_session` stores.

    ``senders`` maps the index of a user message to the person who wrote it
    (``telegram:123``); messages of unknown writer are not in it."""

    id: str
    title: str | None
    created_at: datetime
    updated_at: datetime
    messages: list[Message]
    senders: Mapping[int, str] = field(default_factory=dict)


def check_senders(messages: list[Message], senders: Mapping[int, object]) -> dict[int, str]:
    """``senders`` if each names the person (``KIND:SENDER``) who wrote a user message of
    ``messages`` by its index; raises :class:`MemoryStoreError` saying which one is wrong."""
    checked: dict[int, str] = {}
    for index, sender in senders.items():
        if isinstance(index, bool) or not isinstance(index, int):
            raise MemoryStoreError(
                f"a sender is keyed by a message index, not a {type(index).__name__}"
            )
        if not 0 <= index < len(messages):
            raise MemoryStoreError(f"sender of message {index}: there is no such message")
        if messages[index].role != "user":
            raise MemoryStoreError(
                f"sender of message {index}: only a user message has a sender, this one is "
                f"{messages[index].role}"
            )
        if not isinstance(sender, str) or len(sender) > PERSON_MAX_LENGTH:
            shown = (
                f"{len(sender)} characters" if isinstance(sender, str) else type(sender).__name__
            )
            raise MemoryStoreError(
                f"sender of message {index}: a person is KIND:SENDER (e.g. telegram:123) of at "
                f"most {PERSON_MAX_LENGTH} characters, not {shown}"
            )
        try:
            checked[index] = check_person(sender)
        except MemoryStoreError as exc:
            raise MemoryStoreError(f"sender of message {index}: {exc}") from None
    return checked


def session_json(document: SessionDocument) -> dict[str, Any]:
    """``document`` as the export's JSON object."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "id": document.id,
        "title": document.title,
        "created_at": document.created_at.isoformat(),
        "updated_at": document.updated_at.isoformat(),
        "messages": [
            _message_json(m, document.senders.get(i)) for i, m in enumerate(document.messages)
        ],
    }


def _message_json(message: Message, sender: str | None) -> dict[str, Any]:
    data = message.model_dump(mode="json", exclude={"attachments"})
    if sender is not None:
        data["sender"] = sender
    return data


def read_session(data: object) -> SessionDocument:
    """The session in an export's JSON object; raises :class:`MemoryStoreError` saying
    what is wrong with anything else."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise MemoryStoreError(f'not an openpista session export (no "format": "{FORMAT}")')
    if data.get("version") != VERSION:
        raise MemoryStoreError(
            f"session export version {data.get('version')!r} is not supported (only {VERSION})"
        )
    messages = data.get("messages")
    senders: dict[int, object] = {}
    if isinstance(messages, list):  # each user message may name its sender (not a Message field)
        senders = {
            i: m["sender"]
            for i, m in enumerate(messages)
            if isinstance(m, dict) and m.get("sender") is not None
        }
        data = {**data, "messages": [_without_sender(m) for m in messages]}
    try:
        parsed = _Document.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise MemoryStoreError(f"invalid session export at {where}: {first['msg']}") from None
    try:
        checked = check_senders(parsed.messages, senders)
    except MemoryStoreError as exc:
        raise MemoryStoreError(f"invalid session export: {exc}") from None
    return SessionDocument(
        parsed.id, parsed.title, parsed.created_at, parsed.updated_at, parsed.messages, checked
    )


def _without_sender(message: object) -> object:
    if not isinstance(message, dict):
        return message
    return {key: value for key, value in message.items() if key != "sender"}


def session_markdown(document: SessionDocument) -> str:
    """``document`` as Markdown: a heading, then each message under its role, its sender
    where known, and time (tool calls and results in code blocks)."""
    lines = [f"# {document.title or document.id}", "", f"Session `{document.id}`", ""]
    for index, message in enumerate(document.messages):
        sender = document.senders.get(index)
        who = message.role if sender is None else f"{message.role} `{sender}`"
        lines.append(f"## {who} · {message.created_at:%Y-%m-%d %H:%M:%S} UTC")
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
