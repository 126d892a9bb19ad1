"""Channel ids, threads, mentions and who may talk: real slack-bolt against the emulator,
the real gateway, litellm against the LLM emulator."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from openpista.access import PAIRED, PAIRING_FAILED, REFUSAL, PairingBook
from openpista.channels import ChannelAdapter
from openpista_slack.adapter import SlackAdapter, Target, parse_channel_id
from openpista_slack.settings import parse_settings
from openpista_slack.testing import TEAM, Posted, SlackEmulator, User
from openpista_testing.contracts import ChannelContract
from openpista_testing.emulator import LlmEmulator

Serve = Callable[..., Awaitable[SlackAdapter]]
Table = Callable[..., dict[str, Any]]
GENERAL = "C0GENERAL"
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201ff6dd1d0"
    "a50000000049454e44ae426082"
)


def user_texts(llm: LlmEmulator, index: int) -> list[str]:
    """What the user said in the ``index``-th LLM request (its session's history)."""
    messages = llm.requests[index].json["messages"]
    return [m["content"] for m in messages if m["role"] == "user"]


async def answered(slack: SlackEmulator, channel: str, text: str, count: int = 1) -> list[Posted]:
    """Wait until ``count`` messages in ``channel`` read ``text``; those messages."""

    def found() -> list[Posted]:
        return [m for m in slack.messages if m.channel == channel and m.text == text]

    await slack.wait_until(lambda: len(found()) >= count)
    return found()


async def test_a_mention_is_answered_in_its_thread_which_becomes_a_session(
    serve: Serve, slack: SlackEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_text("first answer")
    llm_emulator.reply_text("second answer")
    llm_emulator.reply_text("another thread")
    await serve()
    mention = slack.mention(alice, GENERAL, "<@U0B0TUSER> what is up?")
    [reply] = await answered(slack, GENERAL, "first answer")
    assert reply.thread_ts == mention["ts"]  # answered in a thread under the mention
    slack.message(alice, GENERAL, "no mention at the top level: not for the bot")
    slack.message(alice, GENERAL, "a thread the bot is not in", thread_ts="1699999999.000001")
    slack.message(alice, GENERAL, "and a follow-up", thread_ts=mention["ts"])
    [follow] = await answered(slack, GENERAL, "second answer")
    assert follow.thread_ts == mention["ts"]
    assert user_texts(llm_emulator, 1) == ["what is up?", "and a follow-up"]
    slack.mention(alice, GENERAL, "<@U0B0TUSER> new topic")
    await answered(slack, GENERAL, "another thread")
    assert user_texts(llm_emulator, 2) == ["new topic"]  # a thread of its own: new session
    assert len(llm_emulator.requests) == 3  # the mention's "message" twin was not answered


async def test_dm_threads_are_sessions_of_their_own(
    serve: Serve, slack: SlackEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_text("top")
    llm_emulator.reply_text("threaded")
    await serve()
    first = slack.dm(alice, "at the top")
    await answered(slack, alice.dm, "top")
    slack.dm(alice, "in a thread", thread_ts=first["ts"])
    [reply] = await answered(slack, alice.dm, "threaded")
    assert reply.thread_ts == first["ts"]
    assert user_texts(llm_emulator, 1) == ["in a thread"]


async def test_members_of_allowed_workspaces_are_served(
    serve: Serve, slack: SlackEmulator, llm_emulator: LlmEmulator, bob: User
) -> None:
    llm_emulator.reply_text("welcome, friend")
    await serve()
    slack.dm(bob, "hello from another workspace")
    await answered(slack, bob.dm, "welcome, friend")


async def test_strangers_are_refused_until_they_pair(
    serve: Serve, slack: SlackEmulator, llm_emulator: LlmEmulator, mallory: User
) -> None:
    llm_emulator.reply_text("paired and served")
    await serve()
    slack.dm(mallory, "let me in")
    await answered(slack, mallory.dm, REFUSAL)
    slack.mention(mallory, GENERAL, "<@U0B0TUSER> me too")
    await slack.wait_until(lambda: [e for e in slack.ephemeral if e["text"] == REFUSAL])
    assert [m for m in slack.messages if m.channel == GENERAL] == []  # refused privately
    slack.dm(mallory, "/pair WRONGCODE")
    await answered(slack, mallory.dm, PAIRING_FAILED)
    code = PairingBook("slack").new_code()
    slack.dm(mallory, f"/pair {code}")
    await answered(slack, mallory.dm, PAIRED)
    slack.dm(mallory, f"/pair {code}")  # served now: no longer a pairing attempt
    await answered(slack, mallory.dm, "paired and served")
    assert llm_emulator.requests[0].json["messages"][-1]["content"] == f"/pair {code}"
    assert PairingBook("slack").is_paired(mallory.id)


async def test_hostile_events_are_ignored(
    serve: Serve, slack: SlackEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_text("still fine")
    await serve()
    base = {"type": "message", "channel": alice.dm, "channel_type": "im", "team": TEAM}
    for event in (
        {**base, "user": alice.id},  # no ts, no text
        {**base, "user": 42, "ts": "1.2", "text": "x"},  # not a user id
        {**base, "user": alice.id, "ts": "1.3", "text": "edited", "subtype": "message_changed"},
        {**base, "bot_id": "B0OTHER", "user": alice.id, "ts": "1.4", "text": "a bot"},
        {**base, "user": "U0B0TUSER", "ts": "1.5", "text": "myself"},
        {"type": "message"},
    ):
        slack.send_event(event)
    slack.send_raw('{"type": "events_api", "envelope_id": "x", "payload": "not an object"}')
    slack.send_raw("not json at all")
    slack.dm(alice, "a real message")
    await answered(slack, alice.dm, "still fine")
    assert len(llm_emulator.requests) == 1


def test_channel_ids() -> None:
    assert parse_channel_id("slack:T1:C2") == Target("T1", "C2")
    assert parse_channel_id("slack:T1:C2:1700000000.000100") == Target(
        "T1", "C2", "1700000000.000100"
    )
    assert Target("T1", "C2", "1.2").channel_id == "slack:T1:C2:1.2"
    for bad in ("slack:T1", "slack:t1:c2", "telegram:1", "slack:T1:C2:abc", "slack:T1:C2:1.2:3"):
        assert parse_channel_id(bad) is None, bad


class TestSlackContract(ChannelContract):
    @pytest.fixture(autouse=True)
    def _emulator(self, slack: SlackEmulator, table: Table, alice: User) -> None:
        self.slack, self.table, self.alice = slack, table, alice

    async def make_adapter(self) -> ChannelAdapter:
        return SlackAdapter(parse_settings(self.table()))

    async def deliver(self, adapter: ChannelAdapter, text: str) -> None:
        self.slack.dm(self.alice, text)

    async def received(self, adapter: ChannelAdapter) -> list[str]:
        return [m.text for m in self.slack.messages if m.channel == self.alice.dm]


async def test_shared_files_reach_the_agent(
    serve: Serve,
    slack: SlackEmulator,
    llm_emulator: LlmEmulator,
    alice: User,
    home: Path,
) -> None:
    llm_emulator.reply_text("nice picture")
    await serve()
    picture = slack.shared_file(PNG, "../../etc/chart.png", "image/png")
    slack.message(alice, alice.dm, "look", channel_type="im", files=[picture])
    await answered(slack, alice.dm, "nice picture")
    content = llm_emulator.requests[0].json["messages"][-1]["content"]
    assert any(part.get("type") == "image_url" for part in content)
    [saved] = (home / "slack" / "files" / alice.dm).iterdir()
    assert saved.read_bytes() == PNG
    assert saved.name.endswith("-chart.png")  # no way out of the folder


async def test_files_not_on_slack_or_too_big_are_refused(
    serve: Serve, slack: SlackEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    await serve(max_download_bytes=1024)
    elsewhere = {**slack.shared_file(b"x", "a.txt"), "url_private": "http://10.0.0.1/steal"}
    elsewhere.pop("url_private_download")
    slack.message(alice, alice.dm, "a", channel_type="im", files=[elsewhere])
    await slack.wait_until(lambda: any("not a Slack file URL" in m.text for m in slack.messages))
    big = slack.shared_file(b"y" * 2048, "big.bin")
    slack.message(alice, alice.dm, "b", channel_type="im", files=[big])
    await slack.wait_until(lambda: any("larger than 1024" in m.text for m in slack.messages))
    lying = {**slack.shared_file(b"z" * 4096, "small.bin"), "size": 10}  # counted as it comes
    slack.message(alice, alice.dm, "c", channel_type="im", files=[lying])
    await slack.wait_until(lambda: len([m for m in slack.messages if "larger" in m.text]) == 2)
    assert llm_emulator.requests == []
    assert all(m.text.startswith("❌") for m in slack.messages)


async def test_a_chats_messages_keep_their_order(
    serve: Serve, slack: SlackEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_text("first")
    llm_emulator.reply_text("second")
    await serve()
    slack.fail_next("chat.postMessage", 503, error="service_unavailable")  # one is held up
    slack.dm(alice, "one")
    slack.dm(alice, "two")
    await answered(slack, alice.dm, "second")
    assert user_texts(llm_emulator, 0) == ["one"]
    assert user_texts(llm_emulator, 1) == ["one", "two"]


async def test_the_home_tab_tells_who_may_talk(
    serve: Serve, slack: SlackEmulator, alice: User, mallory: User
) -> None:
    await serve()
    slack.open_home(alice)
    slack.open_home(mallory)
    await slack.wait_until(lambda: len(slack.home_views) == 2)
    assert "✅" in str(slack.home_views[alice.id])
    assert "/pair CODE" in str(slack.home_views[mallory.id])
