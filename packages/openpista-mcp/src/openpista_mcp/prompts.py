"""MCP prompts as chat commands: ``/mcp:<server>:<prompt> name=value ...``.

The rendered prompt goes into the chat's turn as if the user had written it (through the
daemon's ``submit``); outside the daemon the command answers with the rendered text.
Command names are core's (``[a-z][a-z0-9_:-]``, at most 32): longer ones are left out.
"""

from __future__ import annotations

import logging
import re
import shlex
from typing import TYPE_CHECKING

import mcp_types

from openpista.channels import ChatCommand, CommandCall, CommandReply
from openpista.models import ChannelEvent
from openpista_mcp.connection import ServerConnection
from openpista_mcp.manager import McpManager
from openpista_mcp.results import cut, prompt_messages

if TYPE_CHECKING:
    from openpista import PluginContext

log = logging.getLogger(__name__)

_COMMAND = re.compile(r"^[a-z][a-z0-9_:-]{0,31}$")
_UNSAFE = re.compile(r"[^a-z0-9_-]")
MAX_PROMPT_CHARS = 100_000


def prompt_commands(manager: McpManager, context: PluginContext) -> list[ChatCommand]:
    """A chat command for every prompt of every ready server."""
    commands: list[ChatCommand] = []
    for connection in manager.connections.values():
        for prompt in connection.prompts:
            name = command_name(connection.name, prompt.name)
            if not _COMMAND.match(name):
                log.warning(
                    "MCP prompt %s of %s: /%s is too long", prompt.name, connection.name, name
                )
                continue
            commands.append(_command(name, manager, connection, prompt, context))
    return commands


def command_name(server: str, prompt: str) -> str:
    """``mcp:<server>:<prompt>``, other characters than chat commands allow made ``_``."""
    return f"mcp:{_UNSAFE.sub('_', server.lower())}:{_UNSAFE.sub('_', prompt.lower())}"


def parse_arguments(text: str, prompt: mcp_types.Prompt) -> dict[str, str]:
    """``name=value`` words (shell quoting) checked against the prompt's arguments;
    raises ValueError saying what is wrong."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"cannot read the arguments: {exc}") from None
    known = {argument.name: argument for argument in prompt.arguments or []}
    values: dict[str, str] = {}
    for word in words:
        key, equals, value = word.partition("=")
        if not equals or key not in known:
            expected = ", ".join(f"{name}=..." for name in known) or "no arguments"
            raise ValueError(f"{word!r} is not one of its arguments ({expected})")
        values[key] = value
    missing = [name for name, argument in known.items() if argument.required and name not in values]
    if missing:
        raise ValueError(f"missing {', '.join(f'{name}=...' for name in missing)}")
    return values


def _command(
    name: str,
    manager: McpManager,
    connection: ServerConnection,
    prompt: mcp_types.Prompt,
    context: PluginContext,
) -> ChatCommand:
    async def run(call: CommandCall) -> CommandReply:
        try:
            arguments = parse_arguments(call.argument, prompt)
        except ValueError as exc:
            return CommandReply(f"❌ /{name}: {exc}", is_error=True)
        result = await manager.run(connection.get_prompt(prompt.name, arguments))
        text, attachments = prompt_messages(result, f"{connection.name}-{prompt.name}")
        text = cut(text, MAX_PROMPT_CHARS)
        services = context.services
        if services is None:
            return CommandReply(text)
        event = ChannelEvent(
            channel_id=call.channel_id,
            session_id=call.session_id,
            sender=f"mcp:{connection.name}",
            text=text,
            attachments=attachments,
        )
        await services.submit(event)
        return CommandReply(f"▶ prompt {prompt.name} of {connection.name} sent to the agent")

    usage = " ".join([name, *(f"{a.name}=..." for a in prompt.arguments or [])])
    summary = prompt.description or prompt.title or f"the {prompt.name} prompt"
    return ChatCommand(
        name=name, summary=f"{summary} (MCP server {connection.name})", run=run, usage=usage
    )
