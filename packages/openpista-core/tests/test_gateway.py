"""The gateway with real SQLite, the real provider client against the emulator, loopback
adapters."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from openpista.channels import Capabilities, ChannelContext
from openpista.config import GatewaySettings, Settings
from openpista.gateway.gateway import Gateway, GatewayClosedError
from openpista.memory.store import INTERRUPTED
from openpista.models import Answer, ApprovalPrompt, ChannelEvent, Outbound, TextChunk
from openpista.plugins import PluginHost
from openpista.runtime import Runtime
from openpista.tools.base import Tool
from openpista.tools.registry import tool
from openpista_testing.adapters import LoopbackAdapter
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator
from openpista_testing.gateways import Gateways

OpenGateway = Callable[..., Awaitable[Gateway]]


def make_settings(tmp_path: Path, emulator: LlmEmulator, **gateway: object) -> Settings:
    settings = emulator_settings(emulator, tmp_path)
    settings.gateway = GatewaySettings(restart_max_delay=1, **gateway)  # type: ignore[arg-type]
    return settings


@pytest.fixture
def open_gateway(tmp_path: Path, llm_emulator: LlmEmulator, gateways: Gateways) -> OpenGateway:
    async def open_(*adapters: LoopbackAdapter, settings: Settings | None = None) -> Gateway:
        settings = settings or make_settings(tmp_path, llm_emulator)
        return await gateways.start(settings, *adapters, approvals=False)

    return open_


async def test_answers_go_back_to_the_owning_adapter(
    open_gateway: OpenGateway, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply_text("for a")
    a, b = LoopbackAdapter("a:"), LoopbackAdapter("b:")
    await open_gateway(a, b)
    await a.say("1", "hello")
    answer = await a.answer("1")
    assert (answer.channel_id, answer.text, answer.is_error) == ("a:1", "for a", False)
    assert answer.session_id
    assert not b.sent


async def test_only_streaming_adapters_get_deltas(
    open_gateway: OpenGateway, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply_text("streamed text here", chunk_size=3)
    llm_emulator.reply_text("whole text", chunk_size=3)
    live, plain = LoopbackAdapter("live:"), LoopbackAdapter("plain:", streaming=False)
    await open_gateway(live, plain)
    await live.say("x", "hi")
    await live.answer("x")
    await plain.say("y", "hi")
    await plain.answer("y")
    deltas = [r.text for r in live.sent["live:x"] if isinstance(r, TextChunk)]
    assert len(deltas) > 1
    assert "".join(deltas) == "streamed text here"
    assert [r.kind for r in plain.sent["plain:y"]] == ["answer"]


async def test_every_answer_of_a_turn_names_its_request(
    open_gateway: OpenGateway, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply_text("streamed text here", chunk_size=3)
    live = LoopbackAdapter("live:")
    await open_gateway(live)
    await live.say("x", "hi", request_id="r-42")
    await live.answer("x")
    assert {r.request_id for r in live.sent["live:x"]} == {"r-42"}


async def test_a_chat_keeps_its_session_across_restarts(
    open_gateway: OpenGateway, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply_text("Hi Ada")
    llm_emulator.reply_text("You are Ada")
    first = LoopbackAdapter("t:")
    gateway = await open_gateway(first)
    await first.say("42", "I am Ada")
    session = (await first.answer("42")).session_id
    await gateway.stop(deadline=0)
    await gateway.runtime.close()
    second = LoopbackAdapter("t:")
    await open_gateway(second)
    await second.say("42", "who am I?")
    answer = await second.answer("42")
    assert answer.session_id == session
    history = [m["content"] for m in llm_emulator.requests[1].json["messages"][1:]]
    assert history == ["I am Ada", "Hi Ada", "who am I?"]


async def test_sessions_run_concurrently(
    open_gateway: OpenGateway, llm_emulator: LlmEmulator
) -> None:
    arrived = {"a": asyncio.Event(), "b": asyncio.Event()}

    @tool("test.meet")
    async def meet(me: str, other: str) -> str:
        """Wait for the other chat."""
        arrived[me].set()
        await arrived[other].wait()
        return "met"

    llm_emulator.reply_tool_calls([("test_meet", {"me": "a", "other": "b"})])
    llm_emulator.reply_tool_calls([("test_meet", {"me": "b", "other": "a"})])
    adapter = LoopbackAdapter("c:")
    gateway = await open_gateway(adapter)
    gateway.runtime.toolbox.tools.register(meet)
    await adapter.say("a", "meet b")
    await adapter.say("b", "meet a")
    # Sequential turns would wait for each other forever.
    assert (await adapter.answer("a")).text == "OK"
    assert (await adapter.answer("b")).text == "OK"


async def test_one_turn_at_a_time_per_session(
    open_gateway: OpenGateway, llm_emulator: LlmEmulator
) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    @tool("test.hold")
    async def hold() -> str:
        """Hold the turn until released."""
        started.set()
        await release.wait()
        return "released"

    llm_emulator.reply_tool_calls([("test_hold", {})])
    llm_emulator.reply_text("first done")
    llm_emulator.reply_text("second done")
    adapter = LoopbackAdapter("s:")
    gateway = await open_gateway(adapter)
    gateway.runtime.toolbox.tools.register(hold)
    await adapter.say("same", "first")
    await started.wait()
    await adapter.say("same", "second")
    await asyncio.sleep(0.3)  # room for a wrong implementation to start the second turn
    assert len(llm_emulator.requests) == 1
    release.set()
    assert (await adapter.answer("same")).text == "first done"
    assert (await adapter.answer("same")).text == "second done"


async def test_a_full_gateway_makes_submitters_wait(
    tmp_path: Path, open_gateway: OpenGateway, llm_emulator: LlmEmulator
) -> None:
    release = asyncio.Event()

    @tool("test.block")
    async def block() -> str:
        """Block until released."""
        await release.wait()
        return "unblocked"

    settings = make_settings(tmp_path, llm_emulator, queue_size=1, max_concurrent_turns=1)
    llm_emulator.reply_tool_calls([("test_block", {})])
    adapter = LoopbackAdapter("q:")
    gateway = await open_gateway(adapter, settings=settings)
    gateway.runtime.toolbox.tools.register(block)
    for chat in ("1", "2", "3"):
        await gateway.submit(ChannelEvent(channel_id=f"q:{chat}", sender=chat, text="go"))
    fourth = asyncio.create_task(
        gateway.submit(ChannelEvent(channel_id="q:4", sender="4", text="go"))
    )
    await asyncio.sleep(0.3)
    assert not fourth.done(), "the fourth message should wait: one turn running, one queued"
    release.set()
    await asyncio.wait_for(fourth, 30)
    for chat in ("1", "2", "3", "4"):
        assert not (await adapter.answer(chat)).is_error


async def test_a_failing_channel_is_restarted_while_others_serve(
    open_gateway: OpenGateway, llm_emulator: LlmEmulator
) -> None:
    flaky, steady = LoopbackAdapter("flaky:", fail_starts=2), LoopbackAdapter("steady:")
    await open_gateway(flaky, steady)
    await steady.say("1", "still there?")
    assert (await steady.answer("1")).text == "OK"
    for _ in range(200):
        if flaky.starts == 3:
            break
        await asyncio.sleep(0.05)
    assert flaky.starts == 3
    await flaky.say("1", "back?")
    assert (await flaky.answer("1")).text == "OK"


async def test_provider_problems_reach_the_user_prefixed_with_a_cross(
    tmp_path: Path,
    open_gateway: OpenGateway,
    llm_emulator: LlmEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings = make_settings(tmp_path, llm_emulator)
    settings.providers.clear()  # no key anywhere: the agent cannot be built
    adapter = LoopbackAdapter("e:")
    await open_gateway(adapter, settings=settings)
    await adapter.say("1", "hi")
    answer = await adapter.answer("1")
    assert answer.is_error
    assert answer.text.startswith("❌ ")
    assert "OPENAI_API_KEY" in answer.text
    assert llm_emulator.requests == []


def forever_tool() -> tuple[Tool, asyncio.Event]:
    """A tool ``test.forever`` that never returns, and the event it sets once it runs."""
    started = asyncio.Event()

    @tool("test.forever")
    async def forever() -> str:
        """Never returns."""
        started.set()
        await asyncio.Event().wait()
        return "unreachable"

    return forever, started


async def test_shutdown_cancels_stuck_turns_and_keeps_history_consistent(
    tmp_path: Path, open_gateway: OpenGateway, llm_emulator: LlmEmulator
) -> None:
    forever, started = forever_tool()
    llm_emulator.reply_tool_calls([("test_forever", {})])
    adapter = LoopbackAdapter("d:")
    gateway = await open_gateway(adapter)
    gateway.runtime.toolbox.tools.register(forever)
    await adapter.say("1", "hang")
    await started.wait()
    session = await gateway.router.session_for("d:1")
    await gateway.stop(deadline=0.1)
    with pytest.raises(GatewayClosedError):
        await gateway.submit(ChannelEvent(channel_id="d:1", sender="1", text="late"))
    stored = await gateway.runtime.memory.load_messages(session)
    assert [m.role for m in stored] == ["user", "assistant", "tool"]  # each call its result
    assert stored[-1].tool_result is not None
    assert stored[-1].tool_result.output == INTERRUPTED  # cut short: said so, not run again
    assert adapter.stopped


async def test_remote_tool_call_waits_for_the_users_approval(
    tmp_path: Path, llm_emulator: LlmEmulator
) -> None:
    from openpista.gateway.approvals import ApprovalBroker

    marker = tmp_path / "approved-run"
    llm_emulator.reply_tool_calls([("system_run", {"command": f"touch {marker}"})])
    llm_emulator.reply(lambda body: body["messages"][-1]["content"])
    settings = make_settings(tmp_path, llm_emulator)
    runtime = await Runtime.open(settings, PluginHost.load(entry_points=False))
    adapter = LoopbackAdapter("remote:")  # not a local prefix: the default policy asks
    broker = ApprovalBroker.from_settings(runtime.memory, settings.policy)
    gateway = Gateway(runtime, [adapter], approvals=broker)
    await gateway.start()
    try:
        await adapter.say("7", "make the file")
        for _ in range(400):
            requests = [
                r.request for r in adapter.sent["remote:7"] if isinstance(r, ApprovalPrompt)
            ]
            if requests:
                break
            await asyncio.sleep(0.05)
        [request] = requests
        assert request.tool == "system.run"
        assert not marker.exists()
        await adapter.say("7", "/approve")
        confirmation = await adapter.answer("7")
        assert request.id in confirmation.text
        answer = await adapter.answer("7")
        assert "exit code: 0" in answer.text
        assert marker.exists()
        session = await gateway.router.session_for("remote:7")
        [decision] = await runtime.memory.list_decisions(session)
        assert (decision.tool, decision.action, decision.decided_by) == (
            "system.run",
            "allow",
            "user",
        )
    finally:
        await gateway.stop(deadline=0)
        await runtime.close()


async def test_an_adapter_gets_only_the_kinds_its_capabilities_accept(
    open_gateway: OpenGateway, llm_emulator: LlmEmulator
) -> None:
    @tool("test.ping")
    async def ping() -> str:
        """Answer pong."""
        return "pong"

    for _ in range(2):
        llm_emulator.reply_tool_calls([("test_ping", {})])
        llm_emulator.reply_text("done after the tool", chunk_size=4)
    live = LoopbackAdapter("live:")
    plain = LoopbackAdapter("plain:", capabilities=Capabilities(files=True))
    gateway = await open_gateway(live, plain)
    gateway.runtime.toolbox.tools.register(ping)
    await live.say("1", "use the tool")
    await live.answer("1")
    await plain.say("1", "use the tool")
    await plain.answer("1")
    assert {m.kind for m in live.sent["live:1"]} == {"chunk", "tool", "answer"}
    assert [m.kind for m in plain.sent["plain:1"]] == ["answer"]
    # What an adapter delivers elsewhere is filtered the same way.
    await gateway.deliver(TextChunk(channel_id="plain:1", text="not for a plain chat"))
    await gateway.deliver(Answer(channel_id="plain:1", text="a notice"))
    assert [m.kind for m in plain.sent["plain:1"]] == ["answer", "answer"]


async def test_a_channel_without_files_reads_their_names(
    open_gateway: OpenGateway, tmp_path: Path
) -> None:
    from openpista.models import Attachment

    text_only = LoopbackAdapter("text:", capabilities=Capabilities(streaming=True))
    gateway = await open_gateway(text_only)
    picture = Attachment(name="dot.png", mime_type="image/png", data="iVBORw0KGgo=")
    await gateway.deliver(Answer(channel_id="text:1", text="here", attachments=[picture]))
    [answer] = text_only.sent["text:1"]
    assert isinstance(answer, Answer)
    assert answer.attachments == []
    assert answer.text == "here\n[attachment: dot.png (image/png)]"


class MisconfiguredAdapter(LoopbackAdapter):
    """A channel whose start finds its configuration unusable."""

    async def start(self, ctx: ChannelContext) -> None:
        from openpista.config import ConfigError

        self.starts += 1
        raise ConfigError("[channels.bad] static_dir /nowhere has no index.html")


async def test_a_misconfigured_channel_is_reported_once_and_the_others_serve(
    open_gateway: OpenGateway, caplog: pytest.LogCaptureFixture
) -> None:
    bad, good = MisconfiguredAdapter("bad:"), LoopbackAdapter("good:")
    gateway = await open_gateway(bad, good)
    await good.say("1", "hello")
    assert (await good.answer("1")).text == "OK"
    for _ in range(200):
        if bad not in gateway.adapters:
            break
        await asyncio.sleep(0.05)
    assert gateway.adapters == [good]
    assert bad.starts == 1  # a configuration error is not retried
    [line] = [r.getMessage() for r in caplog.records if "bad" in r.getMessage()]
    assert line == (
        "❌ channel bad is not served: [channels.bad] static_dir /nowhere has no index.html"
    )


class ClosingAdapter(LoopbackAdapter):
    """Records whether each response was sent before the adapter was stopped."""

    def __init__(self, prefix: str) -> None:
        super().__init__(prefix)
        self.after_stop: list[Outbound] = []

    async def send(self, response: Outbound) -> None:
        if self.stopped:
            self.after_stop.append(response)
        await super().send(response)


async def test_shutdown_answers_late_messages_and_cancelled_turns_with_a_cross(
    tmp_path: Path, open_gateway: OpenGateway, llm_emulator: LlmEmulator
) -> None:
    from openpista.gateway.gateway import CANCELLED_NOTICE, STOPPING_NOTICE

    forever, started = forever_tool()
    llm_emulator.reply_tool_calls([("test_forever", {})])
    adapter = ClosingAdapter("d:")
    settings = make_settings(tmp_path, llm_emulator, max_concurrent_turns=1)
    gateway = await open_gateway(adapter, settings=settings)
    gateway.runtime.toolbox.tools.register(forever)
    await adapter.say("1", "hang")
    await started.wait()
    await adapter.say("2", "waiting for a free slot", request_id="r2")
    stopping = asyncio.create_task(gateway.stop(deadline=0.5))
    await asyncio.sleep(0)
    await adapter.say("3", "sent after the signal")
    await stopping
    cancelled, waited, late = [await adapter.answer(chat, wait=5) for chat in "123"]
    assert (cancelled.text, cancelled.is_error) == (CANCELLED_NOTICE.format(deadline=0.5), True)
    assert cancelled.text.startswith("❌ ")
    assert "shutdown_deadline = 0.5 s" in cancelled.text
    assert (waited.text, waited.is_error, waited.request_id) == (STOPPING_NOTICE, True, "r2")
    assert (late.text, late.is_error) == (STOPPING_NOTICE, True)
    assert STOPPING_NOTICE.startswith("❌ ")
    assert adapter.stopped
    assert not adapter.after_stop
    assert len(llm_emulator.requests) == 1  # the refused messages never reached the LLM


async def test_a_chats_first_messages_share_one_lookup_and_keep_their_order(
    tmp_path: Path,
) -> None:
    """Five first messages of a new chat at once: one database lookup, and they come out of
    it in the order they asked (separate lookups could finish in any order and reorder the
    chat's first turns)."""
    from openpista.gateway.router import ChannelRouter
    from openpista.memory import MemoryStore

    store = await MemoryStore.open(f"sqlite+aiosqlite:///{tmp_path / 'router.db'}")
    lookups: list[str] = []
    ensure_channel = store.ensure_channel

    async def counted(channel_id: str, session_id: str) -> str:
        lookups.append(channel_id)
        return await ensure_channel(channel_id, session_id)

    store.ensure_channel = counted  # type: ignore[method-assign]
    router = ChannelRouter(store)
    resumed: list[int] = []

    async def first_message(number: int) -> str:
        session_id = await router.session_for("chat:new")
        resumed.append(number)
        return session_id

    try:
        sessions = await asyncio.gather(*(first_message(n) for n in range(5)))
        assert lookups == ["chat:new"]
        assert resumed == [0, 1, 2, 3, 4]
        assert len(set(sessions)) == 1
        assert await router.session_for("chat:new") == sessions[0]
        assert lookups == ["chat:new"]  # cached from then on
    finally:
        await store.close()


async def test_a_chats_turns_queue_for_the_lock_in_arrival_order(tmp_path: Path) -> None:
    """Tickets taken 1, 2, 3, 4: however late each reaches the lock, the turns run in that
    order; ticket 2 passing early (a command) does not let 3 and 4 overtake 1."""
    from openpista.gateway.router import ChannelRouter, TurnTicket
    from openpista.memory import MemoryStore

    store = await MemoryStore.open(f"sqlite+aiosqlite:///{tmp_path / 'order.db'}")
    router = ChannelRouter(store)
    ran: list[int] = []

    async def turn(number: int, ticket: TurnTicket, delay: float) -> None:
        await asyncio.sleep(delay)
        async with router.lock("s", ticket):
            ran.append(number)
            await asyncio.sleep(0)

    try:
        one, two, three, four = (router.ticket("chat:x") for _ in range(4))
        two.pass_on()  # a command: answered at once, outside the line
        await asyncio.gather(turn(4, four, 0), turn(3, three, 0.01), turn(1, one, 0.05))
        assert ran == [1, 3, 4]
        assert not router._last_tickets  # nothing kept once the line is empty
    finally:
        await store.close()


async def test_a_message_arriving_as_the_first_ones_session_is_found_waits_its_turn(
    open_gateway: OpenGateway, llm_emulator: LlmEmulator
) -> None:
    """The second message of a new chat arrives just as the first one's session lookup
    ends: it finds the session cached at once, yet answers second (it used to go first)."""
    llm_emulator.default_reply = lambda body: "echo: " + body["messages"][-1]["content"]
    adapter = LoopbackAdapter("o:")
    gateway = await open_gateway(adapter)
    second = ChannelEvent(channel_id="o:new", sender="new", text="two")
    late: list[asyncio.Task[Answer]] = []

    class Cache(dict[str, str]):
        def __setitem__(self, key: str, value: str) -> None:
            super().__setitem__(key, value)
            if not late:  # the lookup has just ended; its waiter resumes a step later
                late.append(asyncio.create_task(gateway.handle(second)))

    gateway.router._cache = Cache()
    first = await gateway.handle(ChannelEvent(channel_id="o:new", sender="new", text="one"))
    assert first.text == "echo: one"
    assert (await late[0]).text == "echo: two"
    assert [a.text for a in adapter.sent["o:new"] if isinstance(a, Answer)] == [
        "echo: one",
        "echo: two",
    ]


async def test_a_long_answer_reaches_a_limited_channel_as_several_within_its_limit(
    open_gateway: OpenGateway, llm_emulator: LlmEmulator
) -> None:
    from openpista.models import Attachment
    from openpista.text import FENCE, split_message

    code = "\n".join(f"    total += item_{n}" for n in range(30))
    long = "Here is the script:\n\n```python\n" + code + "\n```\n\n" + "Done, enjoy. " * 20
    llm_emulator.reply_text(long, chunk_size=50)
    small = LoopbackAdapter("small:", capabilities=Capabilities(files=True, max_message_length=120))
    gateway = await open_gateway(small)
    await small.say("1", "a script please")
    expected = split_message(long, 120)
    parts = [await small.answer("1") for _ in expected]
    assert [p.text for p in parts] == expected
    assert len(parts) > 5
    for part in parts:
        assert 0 < len(part.text) <= 120, part.text
        fences = [line for line in part.text.split("\n") if line.startswith(FENCE)]
        assert len(fences) % 2 == 0, part.text  # each part renders its code on its own
    reopened = [p.text for p in parts[1:] if p.text.startswith(FENCE)]
    assert reopened
    assert all(text.startswith("```python\n") for text in reopened)
    shown = "\n".join(p.text for p in parts)
    assert all(f"item_{n}\n" in shown + "\n" for n in range(30))
    assert {p.request_id for p in parts} == {parts[0].request_id}
    # A notice is cut the same way; its file travels with its last part only.
    picture = Attachment(name="dot.png", mime_type="image/png", data="iVBORw0KGgo=")
    await gateway.deliver(Answer(channel_id="small:2", text="word " * 60, attachments=[picture]))
    notice = [m for m in small.sent["small:2"] if isinstance(m, Answer)]
    assert len(notice) == 3
    assert [len(m.attachments) for m in notice] == [0, 0, 1]
    assert all(len(m.text) <= 120 for m in notice)
    # A channel counting its own way (two units a character here) is cut by its count.
    wide = LoopbackAdapter(
        "wide:", capabilities=Capabilities(max_message_length=50, measure=lambda t: 2 * len(t))
    )
    gateway.adapters.append(wide)
    await gateway.deliver(Answer(channel_id="wide:1", text="abc " * 40))
    texts = wide.texts("1")
    assert len(texts) > 5
    assert all(2 * len(t) <= 50 for t in texts)
    assert " ".join(texts).split() == ["abc"] * 40
