"""The slash commands a browser can type: ``/help``, ``/session``, ``/clear``, ``/model``.

They act on the running gateway (its router and model), which the daemon hands to the
adapter (it sets ``adapter.gateway``). Any other text, ``/approve`` and ``/deny``
included, goes to the gateway as a message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from openpista.agent import ERROR_PREFIX

if TYPE_CHECKING:
    from openpista.gateway.gateway import Gateway

COMMANDS = ("/help", "/session", "/clear", "/model")
SESSION_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
HELP = """Commands:
  /help                      this help
  /model                     show the model answering
  /model PROVIDER[/MODEL]    switch the model (for every chat of this agent)
  /session                   show this chat's session id
  /session ID                switch this chat to session ID
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
    router = gateway.router
    if command == "/session":
        if not argument:
            return CommandResult(f"session: {await router.session_for(channel_id)}")
        if not SESSION_ID.match(argument):
            return _error("a session id has letters, digits and . _ : - only")
        await router.bind(channel_id, argument)
        return CommandResult(f"switched to session {argument}", session_id=argument)
    if command == "/clear":
        session_id = await router.new_session(channel_id)
        return CommandResult(f"new session {session_id}", session_id=session_id)
    return _model(gateway, argument)


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
