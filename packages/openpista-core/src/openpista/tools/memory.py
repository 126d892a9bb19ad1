"""The ``memory.*`` tools: search the asking person's conversations, and keep their notes.

Every call acts for the person who wrote the turn's message
(:attr:`~openpista.tools.context.TurnContext.person`), never for anyone named in its
arguments: a search looks only in the sessions that person spoke in (without a known
person: the current session only), and notes are only ever the asking person's own. The
identities the owner linked with that person (``openpista memory link``) count as theirs;
no tool links.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from openpista.tools.base import Tool, ToolError
from openpista.tools.context import current_turn
from openpista.tools.registry import tool

if TYPE_CHECKING:
    from openpista.memory import MemoryStore

SEARCH_LIMIT = 20
"""Most hits one ``memory.search`` call returns."""


def memory_tools(memory: Callable[[], MemoryStore | None]) -> list[Tool]:
    """``memory.search``, ``memory.remember`` and ``memory.forget`` on the store
    ``memory()`` returns when a call runs (``None``: not open, the call fails)."""

    def store() -> MemoryStore:
        opened = memory()
        if opened is None:
            raise ToolError("the memory store is not open")
        return opened

    def person() -> str:
        turn = current_turn()
        if turn is None or not turn.person:
            raise ToolError("notes need to know who is asking, and this chat does not say")
        return turn.person

    @tool("memory.search")
    async def search(
        query: Annotated[str, Field(description="words that must all appear, e.g. 'dentist'")],
        limit: Annotated[int, Field(ge=1, le=SEARCH_LIMIT)] = 10,
    ) -> str:
        """Search the earlier conversations of the person you are talking to (full-text:
        every word must appear, taken literally; use a few distinctive words; where semantic
        search is on, messages close in meaning are found too). Returns matching messages
        with their session, time and a snippet, most relevant first."""
        from openpista.memory import MemoryStoreError, SearchScope

        turn = current_turn()
        if turn is None:
            raise ToolError("memory.search runs only in a conversation")
        scope = (
            SearchScope(person=turn.person)
            if turn.person
            else SearchScope(session_id=turn.session_id)
        )
        try:
            hits = await store().search(query, scope, limit)
        except MemoryStoreError as exc:
            raise ToolError(str(exc)) from None
        if not hits:
            return f"No message of this person's conversations contains: {query}"
        return "\n".join(
            f"- session {hit.session_id}, {hit.created_at:%Y-%m-%d %H:%M} UTC, "
            f"{hit.role}: {hit.snippet}"
            for hit in hits
        )

    @tool("memory.remember")
    async def remember(
        note: Annotated[str, Field(description="what to remember, in one or two sentences")],
    ) -> str:
        """Keep a note about the person you are talking to (a preference, a fact they asked
        you to remember) for later conversations: their notes are shown in your system
        prompt. Only when they ask you to remember something, or clearly would want it."""
        from openpista.memory import MemoryStoreError

        try:
            who = person()
            saved = await store().remember(who, note)
        except MemoryStoreError as exc:
            raise ToolError(str(exc)) from None
        return f"Remembered as note {saved.id}: {saved.text}"

    @tool("memory.forget")
    async def forget(
        note_id: Annotated[int, Field(ge=1, description="the note's number, as [N] shows it")],
    ) -> str:
        """Delete one of the notes of the person you are talking to, by its number."""
        from openpista.memory import MemoryStoreError

        try:
            who = person()
            deleted = await store().forget(who, note_id)
        except MemoryStoreError as exc:
            raise ToolError(str(exc)) from None
        if not deleted:
            raise ToolError(f"this person has no note {note_id}")
        return f"Forgot note {note_id}."

    return [replace(t, conversation_only=True) for t in (search, remember, forget)]
