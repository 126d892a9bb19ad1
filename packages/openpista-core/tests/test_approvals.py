"""The approval broker on a real SQLite memory, and with the real agent, litellm and the LLM
emulator: denied commands never run, approved ones do, and every decision is on record."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from openpista.agent import Agent, ToolGuard
from openpista.config import PolicySettings, SystemRunSettings
from openpista.gateway.approvals import ApprovalBroker
from openpista.memory import MemoryStore
from openpista.models import ApprovalPrompt, ApprovalRequest, ToolCall, utc_now
from openpista.plugins import PluginHost
from openpista.policy import ToolPolicy
from openpista.runtime import build_providers
from openpista.tools.registry import ToolRegistry
from openpista.tools.system_run import make_system_run_tool
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator

CHANNEL = "telegram:42"
SESSION = "s1"


@pytest.fixture
async def memory(memory: MemoryStore) -> MemoryStore:
    await memory.bind_channel(CHANNEL, SESSION)
    return memory


class Chat:
    """The channel side: what the broker sent, in order."""

    def __init__(self) -> None:
        self.sent: asyncio.Queue[ApprovalPrompt] = asyncio.Queue()

    async def send(self, prompt: ApprovalPrompt) -> None:
        await self.sent.put(prompt)

    async def request(self) -> ApprovalRequest:
        return (await self.sent.get()).request


def make_broker(memory: MemoryStore, timeout: float = 60.0, **policy: Any) -> ApprovalBroker:
    return ApprovalBroker(memory, ToolPolicy(PolicySettings.model_validate(policy)), timeout)


def start(guard: ToolGuard, call: ToolCall) -> asyncio.Task[str | None]:
    """Run the guard for ``call`` in the background (it waits for an answer)."""

    async def check() -> str | None:
        return await guard(call)

    return asyncio.create_task(check())


def run(command: str, call_id: str = "c1") -> ToolCall:
    return ToolCall(id=call_id, name="system.run", arguments={"command": command})


# -- policy allow / deny ------------------------------------------------------------------------


async def test_policy_allow_runs_and_is_recorded(memory: MemoryStore) -> None:
    broker = make_broker(memory, remote="allow")
    chat = Chat()
    before = utc_now()
    assert await broker.guard(SESSION, CHANNEL, chat.send)(run("ls -la")) is None
    assert chat.sent.empty()  # nobody was asked
    (decision,) = await memory.list_decisions(SESSION)
    assert (decision.tool, decision.arguments, decision.channel_id) == (
        "system.run",
        {"command": "ls -la"},
        CHANNEL,
    )
    assert (decision.action, decision.decided_by) == ("allow", "policy")
    assert decision.detail == "default for remote channels (policy.remote)"
    assert before - timedelta(seconds=1) <= decision.created_at <= utc_now()


async def test_policy_deny_returns_a_reason_for_the_llm(memory: MemoryStore) -> None:
    broker = make_broker(
        memory, rules=[{"tool": "system.run", "command": "rm *", "action": "deny"}]
    )
    chat = Chat()
    denial = await broker.guard(SESSION, CHANNEL, chat.send)(run("rm -rf ~"))
    assert denial is not None
    assert denial.startswith("the tool policy denies system.run with this command (rule 1 ")
    assert "command='rm *'" in denial
    assert chat.sent.empty()
    (decision,) = await memory.list_decisions(SESSION)
    assert (decision.action, decision.decided_by) == ("deny", "policy")
    assert decision.detail == "rule 1 (tool='system.run', command='rm *')"


async def test_policy_deny_of_another_tool_names_the_tool(memory: MemoryStore) -> None:
    broker = make_broker(memory, rules=[{"tool": "screen.*", "action": "deny"}])
    call = ToolCall(id="c", name="screen.click", arguments={"x": 1})
    denial = await broker.guard(SESSION, CHANNEL, Chat().send)(call)
    assert (
        denial == "the tool policy denies screen.click (rule 1 (tool='screen.*')); it did not run"
    )


# -- ask -------------------------------------------------------------------------------------


async def test_ask_approved_runs_and_records_the_user(memory: MemoryStore) -> None:
    broker = make_broker(memory)
    chat = Chat()
    decided = start(broker.guard(SESSION, CHANNEL, chat.send), run("date"))
    response = await chat.sent.get()
    request = response.request
    assert (response.channel_id, response.session_id) == (CHANNEL, SESSION)
    assert len(request.id) == 6
    assert (request.tool, request.arguments, request.timeout) == (
        "system.run",
        {"command": "date"},
        60.0,
    )
    assert request.reason == "default for remote channels (policy.remote)"
    assert [r.id for r in broker.pending(CHANNEL)] == [request.id]

    assert (
        broker.answer(CHANNEL, f"/approve {request.id}") == f"✅ approved system.run ({request.id})"
    )
    assert await decided is None
    assert broker.pending(CHANNEL) == []
    (decision,) = await memory.list_decisions(SESSION)
    assert (decision.action, decision.decided_by) == ("allow", "user")
    assert request.id in decision.detail
    # Answered once: a second answer finds nothing.
    assert broker.answer(CHANNEL, f"/approve {request.id}") is not None
    assert await memory.list_decisions(SESSION) == [decision]


@pytest.mark.parametrize("answer", ["/deny", "  /DENY  ", "/Deny\n", "/deny@openpista_bot"])
async def test_ask_denied_with_the_id_left_out(memory: MemoryStore, answer: str) -> None:
    broker = make_broker(memory)
    chat = Chat()
    decided = start(broker.guard(SESSION, CHANNEL, chat.send), run("reboot"))
    request = await chat.request()
    assert broker.answer(CHANNEL, answer) == f"🚫 denied system.run ({request.id})"
    denial = await decided
    assert denial == (
        f"the user denied system.run with this command (approval {request.id}); it did not run"
    )
    (decision,) = await memory.list_decisions(SESSION)
    assert (decision.action, decision.decided_by, decision.arguments) == (
        "deny",
        "user",
        {"command": "reboot"},
    )


async def test_ids_are_case_insensitive(memory: MemoryStore) -> None:
    broker = make_broker(memory)
    chat = Chat()
    decided = start(broker.guard(SESSION, CHANNEL, chat.send), run("date"))
    request = await chat.request()
    reply = broker.answer(CHANNEL, f"/APPROVE {request.id.upper()}")
    assert reply is not None
    assert reply.startswith("✅")
    assert await decided is None


async def test_no_answer_in_time_is_a_denial(memory: MemoryStore) -> None:
    broker = make_broker(memory, timeout=0.2)
    chat = Chat()
    denial = await broker.guard(SESSION, CHANNEL, chat.send)(run("date"))
    request = await chat.request()
    assert denial == (
        f"nobody approved system.run with this command within 0.2 s (approval {request.id}); "
        "it did not run"
    )
    assert broker.pending(CHANNEL) == []
    assert broker.answer(CHANNEL, f"/approve {request.id}") == (
        f"❌ no approval request {request.id!r} is waiting here. "
        "Nothing is waiting for your approval."
    )
    (decision,) = await memory.list_decisions(SESSION)
    assert (decision.action, decision.decided_by) == ("deny", "timeout")


async def test_concurrent_requests_get_their_own_ids(memory: MemoryStore) -> None:
    broker = make_broker(memory)
    chat = Chat()
    guard = broker.guard(SESSION, CHANNEL, chat.send)
    calls = [run(f"echo {n}", call_id=f"c{n}") for n in range(3)]
    decided = [start(guard, call) for call in calls]
    requests = {(await chat.request()).arguments["command"]: None for _ in calls}
    pending = broker.pending(CHANNEL)
    assert len({r.id for r in pending}) == 3
    assert set(requests) == {"echo 0", "echo 1", "echo 2"}
    by_command = {r.arguments["command"]: r.id for r in pending}

    listing = broker.answer(CHANNEL, "/approve")
    assert listing is not None
    assert listing.startswith("3 requests are waiting; say which one.")
    assert all(rid in listing for rid in by_command.values())
    assert len(broker.pending(CHANNEL)) == 3  # nothing was resolved

    assert broker.answer(CHANNEL, f"/deny {by_command['echo 1']}") is not None
    assert broker.answer(CHANNEL, f"/approve {by_command['echo 0']}") is not None
    assert broker.answer(CHANNEL, "/approve") is not None  # exactly one left now
    results = await asyncio.gather(*decided)
    assert results[0] is None
    assert results[1] is not None
    assert "the user denied" in results[1]
    assert results[2] is None
    decisions = await memory.list_decisions(SESSION)
    assert sorted((d.arguments["command"], d.action) for d in decisions) == [
        ("echo 0", "allow"),
        ("echo 1", "deny"),
        ("echo 2", "allow"),
    ]
    assert {d.decided_by for d in decisions} == {"user"}


async def test_another_channel_cannot_answer(memory: MemoryStore) -> None:
    broker = make_broker(memory)
    chat = Chat()
    decided = start(broker.guard(SESSION, CHANNEL, chat.send), run("rm -rf ~"))
    request = await chat.request()
    # A different chat, even one that knows the id, and even bound to the same session.
    await memory.bind_channel("telegram:666", SESSION)
    for intruder in ("telegram:666", "telegram:4", "web:42", "telegram:42x"):
        assert broker.answer(intruder, f"/approve {request.id}") == (
            f"❌ no approval request {request.id!r} is waiting here. "
            "Nothing is waiting for your approval."
        )
        assert broker.answer(intruder, "/approve") == "Nothing is waiting for your approval."
    assert [r.id for r in broker.pending(CHANNEL)] == [request.id]
    assert not decided.done()
    assert broker.answer(CHANNEL, f"/deny {request.id}") is not None
    assert await decided is not None


async def test_unknown_ids_and_bad_usage_get_clear_messages(memory: MemoryStore) -> None:
    broker = make_broker(memory)
    chat = Chat()
    decided = start(broker.guard(SESSION, CHANNEL, chat.send), run("date"))
    request = await chat.request()
    assert broker.answer(CHANNEL, "/approve zzzzzz") == (
        f"❌ no approval request 'zzzzzz' is waiting here. Waiting: {request.id} (system.run). "
        "Answer /approve ID or /deny ID."
    )
    long_reply = broker.answer(CHANNEL, "/deny " + "x" * 5000)
    assert long_reply is not None
    assert len(long_reply) < 200
    assert broker.answer(CHANNEL, f"/approve {request.id} please") == (
        f"❌ usage: /approve ID (one id, e.g. /approve {request.id})"
    )
    assert not decided.done()
    assert broker.answer(CHANNEL, "/approve") is not None
    assert await decided is None


@pytest.mark.parametrize(
    "text",
    ["", "   ", "hello", "approve", "/approved", "/approval abc", "please /approve", "/deny-all"],
)
def test_other_text_is_not_an_answer(text: str) -> None:
    broker = ApprovalBroker(None, ToolPolicy(PolicySettings()), 1.0)  # type: ignore[arg-type]
    assert broker.answer(CHANNEL, text) is None


async def test_close_denies_waiting_requests_and_later_asks(memory: MemoryStore) -> None:
    broker = make_broker(memory)
    chat = Chat()
    guard = broker.guard(SESSION, CHANNEL, chat.send)
    decided = start(guard, run("date"))
    request = await chat.request()
    await broker.close()
    # close() returns once the woken guard has stored its decision (memory may close next).
    (stored,) = await memory.list_decisions(SESSION)
    assert (stored.action, stored.decided_by) == ("deny", "timeout")
    denial = await decided
    assert denial == (
        "openpista is shutting down; system.run with this command was not approved and did not run"
    )
    assert broker.pending(CHANNEL) == []
    assert broker.answer(CHANNEL, f"/approve {request.id}") is not None  # too late: no effect
    # After close, asking is refused at once; policy allow/deny still work.
    late = await guard(run("date"))
    assert late is not None
    assert "shutting down" in late
    assert chat.sent.empty()
    await broker.close()  # idempotent
    decisions = await memory.list_decisions(SESSION)
    assert [(d.action, d.decided_by) for d in decisions] == [
        ("deny", "timeout"),
        ("deny", "timeout"),
    ]
    assert request.id in decisions[0].detail


async def test_undeliverable_request_is_a_denial(memory: MemoryStore) -> None:
    broker = make_broker(memory)

    async def broken(response: ApprovalPrompt) -> None:
        raise ConnectionError("the chat is gone")

    denial = await broker.guard(SESSION, CHANNEL, broken)(run("date"))
    assert denial is not None
    assert "could not be delivered" in denial
    assert broker.pending(CHANNEL) == []
    (decision,) = await memory.list_decisions(SESSION)
    assert decision.action == "deny"
    assert "ConnectionError: the chat is gone" in decision.detail


async def test_a_decision_that_cannot_be_recorded_does_not_run(memory: MemoryStore) -> None:
    broker = make_broker(memory, remote="allow")
    denial = await broker.guard("no-such-session", CHANNEL, Chat().send)(run("date"))
    assert denial is not None
    assert "could not be recorded" in denial


async def test_odd_tool_calls_are_recorded(memory: MemoryStore) -> None:
    broker = make_broker(memory, remote="deny")
    guard = broker.guard(SESSION, CHANNEL, Chat().send)
    weird = ToolCall(id="c", name="bad\x00name" + "x" * 300, raw_arguments='{"half')
    assert await guard(weird) is not None
    nul = ToolCall(id="d", name="system.run", arguments={"command": "echo \x00; rm -rf ~"})
    assert await guard(nul) is not None
    first, second = await memory.list_decisions(SESSION)
    assert first.tool.startswith("bad\ufffdname")
    assert len(first.tool) == 255
    assert first.arguments == {"raw_arguments": '{"half'}
    assert second.arguments == {"command": "echo \x00; rm -rf ~"}


def test_timeout_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        ApprovalBroker(None, ToolPolicy(PolicySettings()), 0)  # type: ignore[arg-type]


# -- with the real agent ------------------------------------------------------------------------


def make_agent(llm_emulator: LlmEmulator, memory: MemoryStore, workspace: Path) -> Agent:
    settings = emulator_settings(llm_emulator, workspace)
    provider = build_providers(PluginHost.load(entry_points=False)).build(settings, "openai")
    tools = ToolRegistry([make_system_run_tool(SystemRunSettings(), workspace)])
    return Agent(provider, tools, memory, system_prompt="You are a test agent.")


async def test_agent_never_runs_a_command_the_policy_denies(
    llm_emulator: LlmEmulator, memory: MemoryStore, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    broker = make_broker(
        memory,
        remote="allow",
        rules=[{"tool": "system.run", "command": "touch *", "action": "deny"}],
    )
    llm_emulator.reply_tool_calls([("system_run", {"command": f"touch {marker}"})])
    llm_emulator.reply(lambda body: "saw: " + body["messages"][-1]["content"])
    agent = make_agent(llm_emulator, memory, tmp_path)
    chat = Chat()
    response = await agent.run_turn(
        SESSION, "make the file", guard=broker.guard(SESSION, CHANNEL, chat.send)
    )
    assert not marker.exists()
    tool_message = llm_emulator.requests[1].json["messages"][-1]
    assert tool_message["role"] == "tool"
    assert "the tool policy denies system.run with this command (rule 1" in tool_message["content"]
    assert response.text.startswith("saw: the tool policy denies system.run")
    (decision,) = await memory.list_decisions(SESSION)
    assert (decision.action, decision.decided_by) == ("deny", "policy")
    assert decision.arguments == {"command": f"touch {marker}"}
    stored = [m.tool_result for m in await memory.load_messages(SESSION) if m.tool_result]
    assert len(stored) == 1
    assert stored[0].is_error


async def test_agent_runs_only_what_the_user_approves(
    llm_emulator: LlmEmulator, memory: MemoryStore, tmp_path: Path
) -> None:
    denied, approved = tmp_path / "denied", tmp_path / "approved"
    broker = make_broker(memory, remote="ask")
    llm_emulator.reply_tool_calls([("system_run", {"command": f"touch {denied}"})])
    llm_emulator.reply_tool_calls([("system_run", {"command": f"touch {approved}"})])
    llm_emulator.reply_text("done")
    agent = make_agent(llm_emulator, memory, tmp_path)
    chat = Chat()

    async def user() -> None:
        first = await chat.request()
        assert str(denied) in first.arguments["command"]
        assert broker.answer(CHANNEL, "/deny") is not None
        second = await chat.request()
        assert str(approved) in second.arguments["command"]
        assert broker.answer("web:someone-else", f"/approve {second.id}") is not None
        assert broker.answer(CHANNEL, f"/approve {second.id}") is not None

    answering = asyncio.create_task(user())
    response = await agent.run_turn(
        SESSION, "make both files", guard=broker.guard(SESSION, CHANNEL, chat.send)
    )
    await answering
    assert response.text == "done"
    assert not denied.exists()
    assert approved.exists()
    wire = llm_emulator.requests[1].json["messages"][-1]
    assert "the user denied system.run with this command" in wire["content"]
    decisions = await memory.list_decisions(SESSION)
    assert [(d.action, d.decided_by, d.arguments["command"]) for d in decisions] == [
        ("deny", "user", f"touch {denied}"),
        ("allow", "user", f"touch {approved}"),
    ]
