"""Chat commands answered by the gateway for every channel, and the ChannelContext the
gateway hands its adapters: real SQLite, litellm against the LLM emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from openpista.channels import ChatCommand, CommandCall, CommandReply
from openpista.gateway.approvals import ApprovalBroker
from openpista.gateway.gateway import Gateway
from openpista.hookspecs import hookimpl
from openpista.models import Answer
from openpista.plugins import PluginHost
from openpista.runtime import Runtime
from openpista_testing.adapters import LoopbackAdapter
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator


async def _weather(call: CommandCall) -> CommandReply:
    if call.argument == "boom":
        raise RuntimeError("the forecast service is down")
    return CommandReply(f"sunny in {call.argument} ({call.channel_id})")


class WeatherPlugin:
    @hookimpl
    def register_chat_commands(self, register: Any) -> None:
        register(ChatCommand("weather", "the forecast for CITY", _weather, usage="weather CITY"))
        register(ChatCommand("help", "a second help", _weather))  # taken: left out
        register(ChatCommand("Not A Name", "refused", _weather))
        register(ChatCommand("svc:weather", "namespaced", _weather, usage="svc:weather CITY"))
        register(ChatCommand(":weather", "refused: no letter first", _weather))


@pytest.fixture
async def chats(tmp_path: Path, llm_emulator: LlmEmulator) -> AsyncIterator[list[Any]]:
    """A gateway with approvals and the weather plugin, serving chats ``a:`` and ``b:``."""
    settings = emulator_settings(llm_emulator, tmp_path)
    host = PluginHost.load(entry_points=False)
    host.add("weather", WeatherPlugin())
    runtime = await Runtime.open(settings, host)
    a, b = LoopbackAdapter("a:"), LoopbackAdapter("b:")
    broker = ApprovalBroker.from_settings(runtime.memory, settings.policy)
    gateway = Gateway(runtime, [a, b], approvals=broker)
    await gateway.start()
    yield [gateway, a, b]
    await gateway.stop(deadline=0)
    await runtime.close()


async def ask(adapter: LoopbackAdapter, chat: str, text: str) -> Answer:
    await adapter.say(chat, text)
    return await adapter.answer(chat)


@pytest.mark.parametrize("command", ["/help", "/usage", "/model", "/session", "/approve"])
async def test_every_channel_answers_a_command_the_same_way(
    chats: list[Any], llm_emulator: LlmEmulator, command: str
) -> None:
    gateway, a, b = chats
    await gateway.router.bind("a:1", "same-session")
    await gateway.router.bind("b:1", "same-session")
    one, other = await ask(a, "1", command), await ask(b, "1", command)
    assert one.text == other.text
    assert not one.is_error
    assert llm_emulator.requests == [], "commands never reach the LLM"


async def test_help_lists_the_gateways_and_the_plugins_commands(chats: list[Any]) -> None:
    gateway, a, _ = chats
    text = (await ask(a, "1", "/HELP")).text
    for usage in ("/model PROVIDER[/MODEL]", "/session ID", "/clear", "/usage", "/approve [ID]"):
        assert usage in text
    assert "/weather CITY" in text
    assert "a second help" not in text
    assert gateway.commands.names.count("help") == 1
    assert "Not A Name" not in gateway.commands.names
    assert ":weather" not in gateway.commands.names
    assert "/svc:weather CITY" in text
    assert gateway.runtime.host.reports["weather"].registered["chat_commands"] == [
        "/weather",
        "/help",
        "/Not A Name",
        "/svc:weather",
        "/:weather",
    ]


async def test_a_plugins_command_runs_and_its_failure_is_one_cross_line(
    chats: list[Any],
) -> None:
    _, a, b = chats
    assert (await ask(b, "9", "/weather Paris")).text == "sunny in Paris (b:9)"
    assert (await ask(b, "9", "/svc:weather Rome")).text == "sunny in Rome (b:9)"
    failed = await ask(a, "1", "/weather boom")
    assert failed.is_error
    assert failed.text == "❌ /weather failed: RuntimeError: the forecast service is down"


async def test_model_switches_one_session_only(chats: list[Any], llm_emulator: LlmEmulator) -> None:
    gateway, a, _ = chats
    switched = await ask(a, "1", "/model openai/gpt-4o")
    assert switched.text == "model: openai/gpt-4o (this session)"
    assert (await ask(a, "1", "/model")).text.startswith("model: openai/gpt-4o\n")
    assert (await ask(a, "2", "/model")).text.startswith("model: openai/gpt-4o-mini\n")
    llm_emulator.reply_text("from the switched one")
    llm_emulator.reply_text("from the default")
    await ask(a, "1", "hello")
    await ask(a, "2", "hello")
    assert [r.json["model"] for r in llm_emulator.requests] == ["gpt-4o", "gpt-4o-mini"]
    assert gateway.current_model == ("openai", "gpt-4o-mini")


async def test_a_bare_model_name_is_of_the_current_provider_and_bad_ones_are_refused(
    chats: list[Any],
) -> None:
    _, a, _ = chats
    assert (await ask(a, "1", "/model gpt-4.1")).text == "model: openai/gpt-4.1 (this session)"
    refused = await ask(a, "1", "/model nosuchprovider/x")
    assert refused.is_error
    assert refused.text.startswith("❌ cannot switch to nosuchprovider/x: ")
    assert (await ask(a, "1", "/model")).text.startswith("model: openai/gpt-4.1\n")


async def test_session_clear_and_switch_move_only_this_chat(chats: list[Any]) -> None:
    gateway, a, b = chats
    first = await gateway.session_for("a:1")
    assert (await ask(a, "1", "/session")).text == f"session: {first}"
    cleared = await ask(a, "1", "/clear")
    now = await gateway.session_for("a:1")
    assert now != first
    assert cleared.text == f"new session {now}"
    moved = await ask(b, "1", f"/session {first[:-1]}x")
    assert "no session had this id" in moved.text
    assert await gateway.session_for("b:1") == f"{first[:-1]}x"
    bad = await ask(b, "1", "/session ../../etc")
    assert bad.is_error
    assert bad.text.startswith("❌ a session id has")


async def test_usage_counts_the_tokens_of_the_session(
    chats: list[Any], llm_emulator: LlmEmulator
) -> None:
    _, a, _ = chats
    llm_emulator.reply_text("counted")
    answer = await ask(a, "1", "hi")
    used = answer.usage.total_tokens
    assert used > 0
    assert f": {used:,} tokens (" in (await ask(a, "1", "/usage")).text
    assert ": 0 tokens (0 in, 0 out), $0.0000" in (await ask(a, "2", "/usage")).text


async def test_unknown_slash_words_and_commands_with_files_go_to_the_agent(
    chats: list[Any], llm_emulator: LlmEmulator
) -> None:
    _, a, _ = chats
    llm_emulator.reply_text("the agent read it")
    assert (await ask(a, "1", "/start")).text == "the agent read it"
    assert llm_emulator.requests[0].json["messages"][-1]["content"] == "/start"


async def test_the_context_methods(chats: list[Any], llm_emulator: LlmEmulator) -> None:
    gateway, a, _ = chats
    ctx = a.ctx
    assert ctx is gateway
    await gateway.wait_ready()
    assert ctx.ready
    assert await ctx.history("a:1", 10) == []
    llm_emulator.reply_text("first answer")
    llm_emulator.reply_text("second answer")
    await ask(a, "1", "first")
    await ask(a, "1", "second")
    shown = await ctx.history("a:1", 3)
    assert [(m.role, m.content) for m in shown] == [
        ("assistant", "first answer"),
        ("user", "second"),
        ("assistant", "second answer"),
    ]
    assert await ctx.history("a:1", 0) == []
    assert await ctx.run_command("a:1", "not a command") is None
    reply = await ctx.run_command("a:1", "/session")
    assert reply == CommandReply(f"session: {await ctx.session_for('a:1')}")
    assert not ctx.approval_pending("a:1", "abc123")
    await ctx.deliver(Answer(channel_id="a:7", text="a notice for another chat"))
    assert a.texts("7") == ["a notice for another chat"]


async def test_an_approval_is_pending_until_answered_by_command(
    chats: list[Any], llm_emulator: LlmEmulator, tmp_path: Path
) -> None:
    gateway, a, b = chats
    marker = tmp_path / "ran"
    llm_emulator.reply_tool_calls([("system_run", {"command": f"touch {marker}"})])
    llm_emulator.reply_text("done")
    await a.say("1", "make it")  # not a local chat: the default policy asks
    request_id = (await a.prompt("1")).request.id
    assert gateway.approval_pending("a:1", request_id)
    assert not gateway.approval_pending("b:1", request_id)
    elsewhere = await ask(b, "1", f"/approve {request_id}")
    assert "is waiting here" in elsewhere.text
    confirmation = await ask(a, "1", f"/approve {request_id}")
    assert request_id in confirmation.text
    assert (await a.answer("1")).text == "done"
    assert not gateway.approval_pending("a:1", request_id)
    assert marker.exists()
