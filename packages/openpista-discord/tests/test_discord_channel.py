"""The Discord channel end to end in one process: real discord.py against the Discord
emulator (REST and gateway on loopback), the real gateway, litellm against the LLM
emulator."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from openpista.access import PAIRED, PAIRING_FAILED, REFUSAL, PairingBook
from openpista_discord.adapter import DiscordAdapter
from openpista_discord.testing import DiscordEmulator, User
from openpista_testing.emulator import LlmEmulator
from openpista_testing.polling import eventually

Serve = Callable[..., Awaitable[DiscordAdapter]]


async def test_dm_round_trip(
    serve: Serve, discord_emulator: DiscordEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_text("hello Alice", delay=0.5)
    await serve()
    dm = discord_emulator.dm_channel(alice)
    discord_emulator.send_message(dm, "hi there", alice)
    await eventually(lambda: discord_emulator.texts(dm) == ["hello Alice"])
    assert dm in discord_emulator.typing
    shown = len(discord_emulator.typing)
    await asyncio.sleep(0.6)  # three typing intervals
    assert len(discord_emulator.typing) == shown, "typing went on after the answer"
    assert llm_emulator.requests[0].json["messages"][-1]["content"] == "hi there"
    assert discord_emulator.identifies == 1


def echo(llm_emulator: LlmEmulator) -> None:
    llm_emulator.default_reply = lambda body: "echo: " + body["messages"][-1]["content"]


async def test_guild_answers_only_mentions_and_replies_to_the_bot(
    serve: Serve, discord_emulator: DiscordEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    echo(llm_emulator)
    await serve()
    general = discord_emulator.text_channel
    discord_emulator.send_message(general, "just chatting among humans", alice)
    discord_emulator.send_message(general, "what is up?", alice, mention_bot=True)
    await eventually(lambda: discord_emulator.texts(general) == ["echo: what is up?"])
    [first] = discord_emulator.messages
    discord_emulator.send_message(general, "and a follow-up", alice, reply_to=first.id)
    discord_emulator.send_message(general, "<@999> not you", alice)
    await eventually(lambda: discord_emulator.texts(general)[1:] == ["echo: and a follow-up"])
    await asyncio.sleep(0.3)
    assert len(llm_emulator.requests) == 2


async def test_role_lets_a_member_in_only_in_the_guild(
    serve: Serve, discord_emulator: DiscordEmulator, llm_emulator: LlmEmulator, bob: User
) -> None:
    echo(llm_emulator)
    await serve()
    general = discord_emulator.text_channel
    discord_emulator.send_message(general, "hi", bob, mention_bot=True)
    await eventually(lambda: discord_emulator.texts(general) == ["echo: hi"])
    dm = discord_emulator.dm_channel(bob)  # no roles outside the guild
    discord_emulator.send_message(dm, "hi in private", bob)
    await eventually(lambda: discord_emulator.texts(dm) == [REFUSAL])
    assert len(llm_emulator.requests) == 1


async def test_stranger_is_refused_and_nothing_reaches_the_agent(
    serve: Serve, discord_emulator: DiscordEmulator, llm_emulator: LlmEmulator, mallory: User
) -> None:
    await serve()
    dm = discord_emulator.dm_channel(mallory)
    general = discord_emulator.text_channel
    discord_emulator.send_message(dm, "run rm -rf / please", mallory)
    discord_emulator.send_message(general, "hi", mallory, mention_bot=True)
    await eventually(lambda: discord_emulator.texts(dm) == [REFUSAL])
    await eventually(lambda: discord_emulator.texts(general) == [REFUSAL])
    await asyncio.sleep(0.3)
    assert llm_emulator.requests == []
    assert discord_emulator.typing == []


async def test_pairing_code_lets_a_stranger_in_once(
    serve: Serve, discord_emulator: DiscordEmulator, llm_emulator: LlmEmulator, mallory: User
) -> None:
    llm_emulator.reply_text("welcome")
    await serve()
    code = PairingBook("discord").new_code()
    dm = discord_emulator.dm_channel(mallory)
    discord_emulator.send_message(dm, "/pair WRONGCODE", mallory)
    discord_emulator.send_message(dm, f"/pair {code}", mallory)
    discord_emulator.send_message(dm, "hello now", mallory)
    await eventually(lambda: discord_emulator.texts(dm) == [PAIRING_FAILED, PAIRED, "welcome"])
    eve = User(7777, "eve")
    eve_dm = discord_emulator.dm_channel(eve)
    discord_emulator.send_message(eve_dm, f"/pair {code}", eve)  # a used code is spent
    await eventually(lambda: discord_emulator.texts(eve_dm) == [PAIRING_FAILED])
    assert PairingBook("discord").paired() == [str(mallory.id)]


async def test_pairing_in_a_guild_channel_is_refused(
    serve: Serve, discord_emulator: DiscordEmulator, mallory: User
) -> None:
    await serve()
    code = PairingBook("discord").new_code()
    general = discord_emulator.text_channel
    discord_emulator.send_message(general, f"/pair {code}", mallory, mention_bot=True)
    await eventually(lambda: discord_emulator.texts(general) == [REFUSAL])
    assert PairingBook("discord").paired() == []  # codes are typed in private only


async def test_thread_per_conversation_keeps_each_thread_its_own_session(
    serve: Serve, discord_emulator: DiscordEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.default_reply = lambda body: f"heard {len(body['messages'])} messages"
    await serve(thread_per_conversation=True)
    general = discord_emulator.text_channel
    first = discord_emulator.send_message(general, "remember 42", alice, mention_bot=True)
    thread = int(first["id"])
    await eventually(lambda: discord_emulator.texts(thread) == ["heard 2 messages"])
    assert thread in discord_emulator.threads
    assert discord_emulator.threads[thread]["name"] == "remember 42"
    discord_emulator.send_message(thread, "what was it?", alice)  # no mention needed
    await eventually(lambda: discord_emulator.texts(thread)[1:] == ["heard 4 messages"])
    second = discord_emulator.send_message(general, "new topic", alice, mention_bot=True)
    await eventually(lambda: discord_emulator.texts(int(second["id"])) == ["heard 2 messages"])
    assert discord_emulator.texts(general) == []


async def test_long_answer_is_split_with_code_fences_intact(
    serve: Serve, discord_emulator: DiscordEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    code = "\n".join(f"echo line {i}" for i in range(400))
    answer = "Run this:\n\n```bash\n" + code + "\n```\n\nDone."
    llm_emulator.reply_text(answer, chunk_size=500)
    await serve()
    dm = discord_emulator.dm_channel(alice)
    discord_emulator.send_message(dm, "a long script please", alice)
    await eventually(lambda: "".join(discord_emulator.texts(dm)).endswith("```\n\nDone."))
    texts = discord_emulator.texts(dm)
    assert len(texts) >= 3
    for text in texts:
        assert len(text) <= 2000
        assert text.count("```") % 2 == 0
    assert all(t.startswith("```bash\n") for t in texts[1:-1])
    assert "echo line 399" in "".join(texts)


async def test_streaming_edits_one_message_at_most_every_edit_interval(
    serve: Serve, discord_emulator: DiscordEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    words = " ".join(["streamed"] * 50)
    llm_emulator.reply_text(words, chunk_size=3)  # ~150 chunks
    await serve(edit_interval=600)
    dm = discord_emulator.dm_channel(alice)
    discord_emulator.send_message(dm, "stream please", alice)
    await eventually(lambda: discord_emulator.texts(dm) == [words])
    [message] = discord_emulator.messages
    assert message.edits == 1  # the first chunk is posted, the final answer edits it once


async def test_streaming_shows_the_answer_as_it_grows(
    serve: Serve, discord_emulator: DiscordEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    words = " ".join(["growing"] * 40)
    llm_emulator.reply_text(words, chunk_size=8, delay=0.2)
    await serve(edit_interval=1e-6)
    dm = discord_emulator.dm_channel(alice)
    discord_emulator.send_message(dm, "grow", alice)
    await eventually(lambda: discord_emulator.texts(dm) == [words])
    [message] = discord_emulator.messages
    assert message.edits >= 2
    assert discord_emulator.typing.count(dm) >= 1


async def test_in_someone_elses_thread_the_bot_needs_a_mention(
    serve: Serve, discord_emulator: DiscordEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    echo(llm_emulator)
    await serve()
    thread = discord_emulator.open_thread(alice, "humans only")
    discord_emulator.send_message(thread, "chatting", alice)
    discord_emulator.send_message(thread, "now you", alice, mention_bot=True)
    await eventually(lambda: discord_emulator.texts(thread) == ["echo: now you"])
    assert discord_emulator.texts(discord_emulator.text_channel) == []
    assert len(llm_emulator.requests) == 1


async def test_open_to_all_is_an_explicit_opt_in(
    serve: Serve, discord_emulator: DiscordEmulator, llm_emulator: LlmEmulator, mallory: User
) -> None:
    echo(llm_emulator)
    await serve(open_to_all=True, allowed_users=[], allowed_roles=[])
    dm = discord_emulator.dm_channel(mallory)
    discord_emulator.send_message(dm, "hello", mallory)
    await eventually(lambda: discord_emulator.texts(dm) == ["echo: hello"])
