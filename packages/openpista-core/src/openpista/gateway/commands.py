"""The chat commands every channel answers the same way, and those plugins register.

``/help``, ``/model``, ``/session``, ``/clear``, ``/usage``, ``/search``, ``/approve`` and
``/deny`` are the gateway's own; a plugin adds its own with the ``register_chat_commands``
hook (a name taken already is reported and left out). Any other text, unknown slash words
included, is a message for the agent.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from openpista.channels import ChatCommand, CommandCall, CommandReply
from openpista.cluster_approvals import resolves
from openpista.memory import MemoryStoreError
from openpista.models import error_text

if TYPE_CHECKING:
    from openpista.gateway.gateway import Gateway
    from openpista.models import ChannelEvent

log = logging.getLogger(__name__)

SESSION_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
COMMAND_NAME = re.compile(r"^[a-z][a-z0-9_:-]{0,31}$")  # ":" namespaces (/mcp:srv:prompt)
TYPO_SCAN = 200  # recent sessions an unknown ``/session ID`` is compared with
TYPO_CUTOFF = 0.85  # difflib similarity from which an unknown id counts as a typo
NOTHING_WAITS = "Nothing is waiting for your approval."
SEARCH_HITS = 8  # hits /search shows


def reply_error(text: str) -> CommandReply:
    """A command's error reply (one ❌ line)."""
    return CommandReply(error_text(text), is_error=True)


class ChatCommands:
    """The command table of one gateway: its own commands, then the plugins' ones."""

    def __init__(self, gateway: Gateway, extra: Iterable[tuple[str, ChatCommand]] = ()) -> None:
        self.gateway = gateway
        own: list[tuple[str, str, Callable[[CommandCall], Awaitable[CommandReply]]]] = [
            ("help", "this help", self._help),
            ("model", "show the model answering this chat", self._model),
            ("model PROVIDER[/MODEL]", "switch this chat's session to another model", self._model),
            ("session", "show this chat's session id", self._session),
            ("session ID", "switch this chat to session ID (says when it is new)", self._session),
            ("clear", "start a new session in this chat", self._clear),
            ("usage", "tokens and cost of this session, and today's spend", self._usage),
            ("search WORDS", "find WORDS in this chat's conversations", self._search),
            ("approve [ID]", "allow the tool call waiting for approval", self._approval),
            ("deny [ID]", "refuse the tool call waiting for approval", self._approval),
        ]
        self._run: dict[str, Callable[[CommandCall], Awaitable[CommandReply]]] = {}
        self._help_lines: list[tuple[str, str]] = []
        for usage, summary, run in own:
            self._run.setdefault(usage.split()[0], run)
            self._help_lines.append((usage, summary))
        for plugin, command in extra:
            if not COMMAND_NAME.match(command.name):
                log.error("❌ plugin %s: chat command %r is not a valid name", plugin, command.name)
            elif command.name in self._run:
                log.error("❌ plugin %s: chat command /%s is already taken", plugin, command.name)
            else:
                self._run[command.name] = command.run
                self._help_lines.append((command.usage or command.name, command.summary))

    @property
    def names(self) -> list[str]:
        """Every command's name (without the slash)."""
        return list(self._run)

    def find(self, text: str) -> tuple[Callable[[CommandCall], Awaitable[CommandReply]], str]:
        """The handler of the command ``text`` and its argument; KeyError if it is none."""
        if not text.startswith("/"):
            raise KeyError(text)
        word, _, argument = text.strip().partition(" ")
        return self._run[word[1:].lower()], argument.strip()

    def is_command(self, event: ChannelEvent) -> bool:
        """Whether the gateway answers ``event`` as a chat command (text, no files)."""
        if event.attachments:
            return False
        try:
            self.find(event.text)
        except KeyError:
            return False
        return True

    async def run(self, channel_id: str, session_id: str, text: str) -> CommandReply | None:
        """Answer ``text`` if it is a command (``None`` if not); a command that fails
        answers one ❌ line."""
        try:
            handler, argument = self.find(text)
        except KeyError:
            return None
        call = CommandCall(channel_id, session_id, text.split()[0][1:].lower(), argument)
        try:
            return await handler(call)
        except MemoryStoreError as exc:  # the database is unwell: say so
            return reply_error(f"/{call.name} failed: {exc}")
        except Exception as exc:  # a plugin's command must not break the chat
            log.exception("chat command /%s failed", call.name)
            return reply_error(f"/{call.name} failed: {type(exc).__name__}: {exc}")

    # -- the gateway's own ----------------------------------------------------------------

    async def _help(self, call: CommandCall) -> CommandReply:
        width = max(len(usage) for usage, _ in self._help_lines) + 3
        lines = [f"  /{usage:<{width}}{summary}" for usage, summary in self._help_lines]
        return CommandReply("Commands:\n" + "\n".join(lines))

    async def _model(self, call: CommandCall) -> CommandReply:
        gateway, argument = self.gateway, call.argument
        if gateway.handover is not None:  # cluster: chosen on any replica
            await gateway.handover.load_model(call.session_id)
        try:
            current, current_model = gateway.model_of(call.session_id)
        except Exception as exc:  # no provider configured: say why
            return reply_error(f"no model answers: {exc}")
        if not argument:
            return CommandReply(
                f"model: {current}/{current_model}\nswitch with /model PROVIDER[/MODEL]"
            )
        provider, _, model = argument.partition("/")
        known = {name.lower() for name in gateway.runtime.providers.names()}
        if "/" not in argument and provider.lower() not in known:
            # A bare model name (``/model gpt-4o``) is a model of the current provider.
            provider, model = current, argument
        try:
            now_provider, now_model = gateway.set_session_model(
                call.session_id, provider or None, model or None
            )
            if gateway.handover is not None:
                await gateway.handover.store_model(call.session_id, provider or None, model or None)
        except Exception as exc:
            return reply_error(f"cannot switch to {argument}: {exc}")
        return CommandReply(f"model: {now_provider}/{now_model} (this session)")

    async def _session(self, call: CommandCall) -> CommandReply:
        if not call.argument:
            return CommandReply(f"session: {call.session_id}")
        session_id, router = call.argument, self.gateway.router
        if not SESSION_ID.match(session_id):
            return reply_error("a session id has letters, digits and . _ : - only")
        memory = self.gateway.runtime.memory
        found = await memory.get_session(session_id)
        if found is not None:
            await router.bind(call.channel_id, session_id)
            count = found.message_count
            return CommandReply(
                f"switched to session {session_id} ({count} message{'' if count == 1 else 's'})",
                session_id=session_id,
            )
        known = [info.id for info in await memory.list_sessions(limit=TYPO_SCAN)]
        close = difflib.get_close_matches(session_id, known, n=1, cutoff=TYPO_CUTOFF)
        await router.bind(call.channel_id, session_id)
        hint = f"\nDid you mean /session {close[0]} ?" if close else ""
        return CommandReply(
            f"new session {session_id}: no session had this id, so it starts empty{hint}",
            session_id=session_id,
        )

    async def _clear(self, call: CommandCall) -> CommandReply:
        session_id = await self.gateway.router.new_session(call.channel_id)
        return CommandReply(f"new session {session_id}", session_id=session_id)

    async def _usage(self, call: CommandCall) -> CommandReply:
        from openpista.observability.report import usage_reply

        return CommandReply(await usage_reply(self.gateway.runtime, call.session_id))

    async def _search(self, call: CommandCall) -> CommandReply:
        from openpista.memory import SearchScope

        if not call.argument:
            return reply_error("search for what? /search WORDS")
        scope = SearchScope(channel_id=call.channel_id)
        hits = await self.gateway.runtime.memory.search(call.argument, scope, SEARCH_HITS)
        if not hits:
            return CommandReply(f"nothing in this chat's conversations matches {call.argument}")
        lines = [
            f"{hit.created_at:%Y-%m-%d %H:%M} {hit.role} (session {hit.session_id}): {hit.snippet}"
            for hit in hits
        ]
        return CommandReply("\n".join(lines))

    async def _approval(self, call: CommandCall) -> CommandReply:
        broker = self.gateway.approvals
        typed = f"/{call.name} {call.argument}".strip()
        elsewhere = self.gateway.approvals_elsewhere
        reply = None
        if broker is not None and elsewhere is not None:  # cluster: here, else on its replica
            reply = resolves(broker, call.channel_id, typed)
            reply = reply or await elsewhere.answer(call.channel_id, typed)
        if reply is None and broker is not None:
            reply = broker.answer(call.channel_id, typed)
        text = reply or NOTHING_WAITS
        return CommandReply(text, is_error=text.startswith("❌"))
