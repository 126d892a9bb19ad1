"""Context compaction: when a request would not fit the model's context window, the older
part of the history is summarised by the LLM and the summary stands for it from then on.

Sizes are estimated (about four characters a token, see :func:`estimate_tokens`): a request
is compacted once it would fill :data:`COMPACT_AT` of the window, keeping the newest messages
that fill at most :data:`KEEP` of it. The kept part always starts at a user message, so a
tool call and its result are never separated, and the conversation still starts the way
every provider accepts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from openpista.model_map import context_window, litellm_model_map
from openpista.models import Message

CHARS_PER_TOKEN = 4
COMPACT_AT = 0.75
"""Share of the context window a request may fill before it is compacted."""
KEEP = 0.4
"""Share of the context window the newest messages kept verbatim may fill."""
MESSAGE_CHARS = 2000
"""Longest part of one message the summariser reads (the middle is cut)."""
NOTICE = (
    "ℹ️ This conversation got long for the model's context window, so I summarised its "
    "older part; I keep the summary and the recent messages in mind."
)
"""What the user reads once, with the answer of the turn that first compacted a session."""

SUMMARY_PROMPT = (
    "You summarise a conversation between a user and an AI assistant for the assistant's "
    "own later use. Keep every fact, decision, preference, name, number and open task; "
    "drop greetings and repetition. Write plain sentences or short bullet points, at most "
    "{words} words. If an earlier summary is given, merge it in."
)


LOOKUP_FROM = 1024
"""Estimated tokens below which no request needs compaction: the model's window is looked
up (and litellm's model map parsed) only for a history longer than this."""


async def model_context_window(model: str, history: Sequence[Message]) -> int | None:
    """The input-token limit of ``model`` from litellm's local model map (never importing
    litellm; the map is parsed once, in a thread), ``None`` when it has none or when
    ``history`` is too short to need it (:data:`LOOKUP_FROM`)."""
    if estimate_tokens(history) < LOOKUP_FROM:
        return None
    await asyncio.to_thread(litellm_model_map)
    return context_window(model)


def estimate_tokens(messages: Sequence[Message]) -> int:
    """About how many tokens ``messages`` take in a request."""
    chars = 0
    for message in messages:
        chars += len(message.content) + 16
        for call in message.tool_calls:
            chars += len(call.name) + len(json.dumps(call.arguments, ensure_ascii=False))
        if message.tool_result is not None:
            chars += len(message.tool_result.output)
    return chars // CHARS_PER_TOKEN + 1


def needs_compaction(system: Message, history: Sequence[Message], window: int) -> bool:
    """Whether a request of ``system`` and ``history`` would fill too much of ``window``."""
    return estimate_tokens([system, *history]) > window * COMPACT_AT


def split_point(history: Sequence[Message], window: int) -> int | None:
    """Where the kept part of ``history`` begins: the earliest user message after which the
    rest fits :data:`KEEP` of ``window`` (else the last user message); ``None`` when there is
    nothing before it to summarise."""
    budget = window * KEEP
    users = [i for i, message in enumerate(history) if message.role == "user" and i > 0]
    for index in users:
        if estimate_tokens(history[index:]) <= budget:
            return index
    return users[-1] if users else None


def summary_request(older: Sequence[Message], window: int) -> list[Message]:
    """The messages asking the LLM to summarise ``older`` (a transcript that fits
    ``window``, the newest messages kept when it must be cut)."""
    words = max(50, int(window * KEEP * 0.5))
    budget = int(window * COMPACT_AT * CHARS_PER_TOKEN) - len(SUMMARY_PROMPT) - 200
    lines: list[str] = []
    used = 0
    for message in reversed(older):
        line = _transcript_line(message)
        if used + len(line) > budget:
            lines.append("(earlier messages left out)")
            break
        lines.append(line)
        used += len(line) + 1
    transcript = "\n".join(reversed(lines))
    return [
        Message(role="system", content=SUMMARY_PROMPT.format(words=words)),
        Message(role="user", content=f"The conversation so far:\n\n{transcript}"),
    ]


def _transcript_line(message: Message) -> str:
    if message.role == "system":
        return f"[earlier summary] {message.content}"
    parts = [message.content] if message.content else []
    parts += [f"(called {c.name} with {json.dumps(c.arguments)})" for c in message.tool_calls]
    if message.tool_result is not None:
        result = message.tool_result
        parts.append(f"(result of {result.name}: {result.output})")
    return f"{message.role}: {_cut(' '.join(parts))}"


def _cut(text: str) -> str:
    if len(text) <= MESSAGE_CHARS:
        return text
    half = MESSAGE_CHARS // 2
    return f"{text[:half]} … {text[-half:]}"
