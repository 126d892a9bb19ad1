"""The slash commands a browser can type: ``/help``, ``/session``, ``/clear``, ``/model``.

They act on the running gateway (its router and model), which the daemon hands to the
adapter (it sets ``adapter.gateway``). Any other text, ``/approve`` and ``/deny``
included, goes to the gateway as a message.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from openpista.models import ERROR_PREFIX

if TYPE_CHECKING:
    from openpista.gateway.gateway import Gateway

COMMANDS = ("/help", "/session", "/clear", "/model")
SESSION_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
TYPO_SCAN = 200  # recent sessions an unknown ``/session ID`` is compared with
TYPO_CUTOFF = 0.85  # difflib similarity from which an unknown id counts as a typo
HELP = """Commands:
  /help                      this help
  /model                     show the model answering
  /model PROVIDER[/MODEL]    switch the model (for every chat of this agent)
  /session                   show this chat's session id
  /session ID                switch this chat to session ID (says when it is new)
  /clear                     start a new session in this chat
  /approve ID, /deny ID      answer an approval request (the buttons do it too)"""


@dataclass(frozen=True)
class CommandResult:
    """What a command answers; ``session_id`` is set when it moved the chat to a session."""

    text: str
    session_id: str | None = None
    is_error: bool = False


def is_command(text: str) -> bool:
    """Whether ``text`` is one of this channel's own commands."""
    return text.split(maxsplit=1)[0].lower() in COMMANDS if text.startswith("/") else False


async def run_command(gateway: Gateway | None, channel_id: str, text: str) -> CommandResult:
    """Run one of :data:`COMMANDS` for the chat ``channel_id``."""
    command, _, argument = text.strip().partition(" ")
    command, argument = command.lower(), argument.strip()
    if command == "/help":
        return CommandResult(HELP)
    if gateway is None:
        return _error(f"{command} needs the openpista daemon (`openpista start`)")
    if command == "/model":
        return _model(gateway, argument)
    from openpista.memory.store import MemoryStoreError

    try:
        if command == "/clear":
            session_id = await gateway.router.new_session(channel_id)
            return CommandResult(f"new session {session_id}", session_id=session_id)
        if not argument:
            return CommandResult(f"session: {await gateway.router.session_for(channel_id)}")
        return await _switch(gateway, channel_id, argument)
    except MemoryStoreError as exc:  # the database is unwell: say so, keep the connection
        return _error(f"{command} failed: {exc}")


async def _switch(gateway: Gateway, channel_id: str, session_id: str) -> CommandResult:
    """``/session ID``: switch, saying whether ``ID`` is new (and what it may be a typo of)."""
    if not SESSION_ID.match(session_id):
        return _error("a session id has letters, digits and . _ : - only")
    memory = gateway.runtime.memory
    found = await memory.get_session(session_id)
    if found is not None:
        await gateway.router.bind(channel_id, session_id)
        count = found.message_count
        return CommandResult(
            f"switched to session {session_id} ({count} message{'' if count == 1 else 's'})",
            session_id=session_id,
        )
    known = [info.id for info in await memory.list_sessions(limit=TYPO_SCAN)]
    close = difflib.get_close_matches(session_id, known, n=1, cutoff=TYPO_CUTOFF)
    await gateway.router.bind(channel_id, session_id)
    hint = f"\nDid you mean /session {close[0]} ?" if close else ""
    return CommandResult(
        f"new session {session_id}: no session had this id, so it starts empty{hint}",
        session_id=session_id,
    )


def _model(gateway: Gateway, argument: str) -> CommandResult:
    if not argument:
        try:
            provider, model = gateway.current_model
        except Exception as exc:  # no provider configured: say why
            return _error(f"no model answers: {exc}")
        return CommandResult(f"model: {provider}/{model}\nswitch with /model PROVIDER[/MODEL]")
    provider, _, model = argument.partition("/")
    known = {name.lower() for name in gateway.runtime.providers.names()}
    if "/" not in argument and provider.lower() not in known:
        # A bare model name (``/model gpt-4o``) is a model of the current provider.
        try:
            current, _ = gateway.current_model
        except Exception as exc:
            return _error(f"no model answers: {exc}")
        provider, model = current, argument
    try:
        gateway.set_model(provider or None, model or None)
        now_provider, now_model = gateway.current_model
    except Exception as exc:
        return _error(f"cannot switch to {argument}: {exc}")
    return CommandResult(f"model: {now_provider}/{now_model}")


def _error(text: str) -> CommandResult:
    return CommandResult(ERROR_PREFIX + text, is_error=True)
