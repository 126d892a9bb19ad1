"""Slash commands and approval buttons: real discord.py against the Discord emulator's
INTERACTION_CREATE events and interaction callbacks, and the real gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from openpista.access import PAIRED, REFUSAL, PairingBook
from openpista.config import PolicySettings
from openpista_discord.adapter import NOT_YOURS, DiscordAdapter
from openpista_discord.testing import EPHEMERAL, DiscordEmulator, Sent, User
from openpista_testing.emulator import LlmEmulator
from openpista_testing.polling import eventually

Serve = Callable[..., Awaitable[DiscordAdapter]]
COMMANDS = {"ask", "model", "session", "clear", "help", "pair"}


def ephemeral(response: dict[str, object]) -> bool:
    data = response.get("data")
    return isinstance(data, dict) and bool(int(data.get("flags") or 0) & EPHEMERAL)


async def test_slash_commands_are_registered_globally_or_per_guild(
    serve: Serve, discord_emulator: DiscordEmulator
) -> None:
    await serve()
    registered = discord_emulator.commands["global"]
    assert {c["name"] for c in registered} == COMMANDS
    ask = next(c for c in registered if c["name"] == "ask")
    assert [o["name"] for o in ask["options"]] == ["prompt"]
    assert all(c["description"] for c in registered)


async def test_guild_registration(serve: Serve, discord_emulator: DiscordEmulator) -> None:
    await serve(command_guilds=[discord_emulator.guild_id])
    assert "global" not in discord_emulator.commands
    names = {c["name"] for c in discord_emulator.commands[str(discord_emulator.guild_id)]}
    assert names == COMMANDS


async def test_core_commands_answer_ephemerally(
    serve: Serve, discord_emulator: DiscordEmulator, alice: User
) -> None:
    await serve()
    dm = discord_emulator.dm_channel(alice)
    shown = discord_emulator.slash(dm, alice, "help")
    [reply] = await discord_emulator.wait_for_responses(shown)
    assert reply["type"] == 4
    assert ephemeral(reply)
    assert "/model" in reply["data"]["content"]
    session = discord_emulator.slash(dm, alice, "session")
    [first] = await discord_emulator.wait_for_responses(session)
    cleared = discord_emulator.slash(dm, alice, "clear")
    [reply] = await discord_emulator.wait_for_responses(cleared)
    assert ephemeral(reply)
    again = discord_emulator.slash(dm, alice, "session")
    [second] = await discord_emulator.wait_for_responses(again)
    assert first["data"]["content"] != second["data"]["content"]  # /clear moved the chat


async def test_ask_posts_the_question_and_the_answer_follows(
    serve: Serve, discord_emulator: DiscordEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_text("forty-two")
    await serve()
    general = discord_emulator.text_channel
    asked = discord_emulator.slash(general, alice, "ask", {"prompt": "the answer?"})
    [reply] = await discord_emulator.wait_for_responses(asked)
    assert reply["data"]["content"] == "> the answer?"
    assert not ephemeral(reply)
    await eventually(lambda: discord_emulator.texts(general) == ["forty-two"])
    assert llm_emulator.requests[0].json["messages"][-1]["content"] == "the answer?"


async def test_strangers_get_the_refusal_and_can_pair(
    serve: Serve, discord_emulator: DiscordEmulator, llm_emulator: LlmEmulator, mallory: User
) -> None:
    await serve()
    general = discord_emulator.text_channel
    for name, options in (("ask", {"prompt": "rm -rf /"}), ("model", {}), ("clear", {})):
        refused = discord_emulator.slash(general, mallory, name, options)
        [reply] = await discord_emulator.wait_for_responses(refused)
        assert ephemeral(reply)
        assert reply["data"]["content"] == REFUSAL
    code = PairingBook("discord").new_code()
    paired = discord_emulator.slash(general, mallory, "pair", {"code": code})
    [reply] = await discord_emulator.wait_for_responses(paired)
    assert ephemeral(reply)
    assert reply["data"]["content"] == PAIRED
    await asyncio.sleep(0.3)
    assert llm_emulator.requests == []
    assert discord_emulator.texts(general) == []


async def ask_approval(
    serve: Serve, discord_emulator: DiscordEmulator, llm_emulator: LlmEmulator, user: User
) -> tuple[Sent, str]:
    """Have the agent ask to run a command in the guild channel; the prompt and its id."""
    llm_emulator.reply_tool_calls([("system_run", {"command": "echo approved-run"})])
    llm_emulator.reply(lambda body: "tool said: " + body["messages"][-1]["content"])
    await serve(policy=PolicySettings(remote="ask", approval_timeout=30))
    general = discord_emulator.text_channel
    discord_emulator.send_message(general, "run it", user, mention_bot=True)
    [prompt] = await discord_emulator.wait_for_messages(1, channel_id=general)
    buttons = prompt.components[0]["components"]
    assert [b["custom_id"].split(":")[0] for b in buttons] == ["approve", "deny"]
    return prompt, buttons[0]["custom_id"].removeprefix("approve:")


async def test_only_the_asker_can_press_the_buttons(
    serve: Serve,
    discord_emulator: DiscordEmulator,
    llm_emulator: LlmEmulator,
    alice: User,
    bob: User,
    mallory: User,
) -> None:
    prompt, request_id = await ask_approval(serve, discord_emulator, llm_emulator, alice)
    stranger = discord_emulator.press(prompt.id, mallory, f"approve:{request_id}")
    [refused] = await discord_emulator.wait_for_responses(stranger)
    assert refused["data"]["content"] == REFUSAL
    other = discord_emulator.press(prompt.id, bob, f"approve:{request_id}")  # allowed, not asker
    [not_yours] = await discord_emulator.wait_for_responses(other)
    assert ephemeral(not_yours)
    assert not_yours["data"]["content"] == NOT_YOURS
    assert prompt.components, "a refused press removed the buttons"
    pressed = discord_emulator.press(prompt.id, alice, f"approve:{request_id}")
    [update] = await discord_emulator.wait_for_responses(pressed)
    assert update["type"] == 7  # the prompt message is updated in place
    assert update["data"]["components"] == []
    assert f"Approved by <@{alice.id}>" in update["data"]["content"]
    general = discord_emulator.text_channel
    await eventually(
        lambda: any(t.startswith("tool said:") for t in discord_emulator.texts(general)), wait=30
    )
    late = discord_emulator.press(prompt.id, alice, f"deny:{request_id}")
    [answered] = await discord_emulator.wait_for_responses(late)
    assert "already answered" in answered["data"]["content"]


async def test_forged_or_stale_buttons_are_refused_politely(
    serve: Serve, discord_emulator: DiscordEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_text("plain answer")
    await serve()
    dm = discord_emulator.dm_channel(alice)
    discord_emulator.send_message(dm, "hi", alice)
    [message] = await discord_emulator.wait_for_messages(1, channel_id=dm)
    for custom_id in ("approve:../../etc", "rm -rf /", "x" * 100, "approve:abcdef"):
        pressed = discord_emulator.press(message.id, alice, custom_id)
        [reply] = await discord_emulator.wait_for_responses(pressed)
        content = reply["data"].get("content", "")
        assert "no longer valid" in content or "already answered" in content, custom_id
    assert len(llm_emulator.requests) == 1  # no press reached the agent
