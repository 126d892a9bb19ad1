"""MCP prompts as chat commands, against the demo server's ``greet`` prompt."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from openpista import DaemonServices, PluginContext
from openpista.channels import ChatCommand, CommandCall
from openpista.config import Settings
from openpista.models import ChannelEvent
from openpista_mcp.plugin import register_chat_commands

from .conftest import stdio_server


@pytest.fixture
async def context() -> AsyncIterator[PluginContext]:
    """A runtime's plugin context with the demo server configured; closed after the test."""
    context = PluginContext(Settings(mcp={"servers": {"demo": stdio_server()}}))
    yield context
    await context.close()


def commands(context: PluginContext) -> dict[str, ChatCommand]:
    registered: list[ChatCommand] = []
    register_chat_commands(registered.append, context)
    return {command.name: command for command in registered}


async def test_a_prompt_is_a_command_whose_rendering_goes_into_the_chats_turn(
    context: PluginContext,
) -> None:
    submitted: list[ChannelEvent] = []

    async def submit(event: ChannelEvent) -> None:
        submitted.append(event)

    context.services = DaemonServices(submit=submit, channels=("web",))
    [greet] = commands(context).values()
    assert (greet.name, greet.usage) == ("mcp:demo:greet", "mcp:demo:greet name=...")
    assert greet.summary == "Greet someone. (MCP server demo)"

    reply = await greet.run(CommandCall("web:1", "s-1", greet.name, "name='Ada Lovelace'"))

    assert reply.text == "▶ prompt greet of demo sent to the agent"
    [event] = submitted
    assert (event.channel_id, event.session_id, event.sender) == ("web:1", "s-1", "mcp:demo")
    assert event.text == "Please greet Ada Lovelace warmly."


async def test_outside_the_daemon_the_command_answers_with_the_prompt(
    context: PluginContext,
) -> None:
    greet = commands(context)["mcp:demo:greet"]

    reply = await greet.run(CommandCall("tui:1", "s-1", greet.name, "name=Bo"))

    assert (reply.text, reply.is_error) == ("Please greet Bo warmly.", False)


@pytest.mark.parametrize(
    ("argument", "error"),
    [
        ("", "❌ /mcp:demo:greet: missing name=..."),
        ("colour=red", "❌ /mcp:demo:greet: 'colour=red' is not one of its arguments (name=...)"),
        ("Bo", "❌ /mcp:demo:greet: 'Bo' is not one of its arguments (name=...)"),
        ("name='Bo", "❌ /mcp:demo:greet: cannot read the arguments: No closing quotation"),
    ],
)
async def test_wrong_arguments_answer_one_error_line(
    context: PluginContext, argument: str, error: str
) -> None:
    greet = commands(context)["mcp:demo:greet"]

    reply = await greet.run(CommandCall("tui:1", "s-1", greet.name, argument))

    assert (reply.text, reply.is_error) == (error, True)
