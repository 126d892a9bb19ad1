"""The web channel in a real gateway (SQLite memory, the LLM emulator): sessions, commands,
history after a reload, streamed answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from openpista.gateway.gateway import Gateway
from openpista.plugins import PluginHost
from openpista.runtime import Runtime
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator
from openpista_web.testing import greeted, next_frame

Serve = Callable[..., Awaitable[Any]]


@pytest.fixture
async def gateway(llm_emulator: LlmEmulator, tmp_path: Path) -> AsyncIterator[Gateway]:
    (tmp_path / "workspace").mkdir()
    runtime = await Runtime.open(
        emulator_settings(llm_emulator, tmp_path), PluginHost.load(entry_points=False)
    )
    gw = Gateway(runtime, [])
    try:
        yield gw
    finally:
        await gw.stop(deadline=0)
        await runtime.close()


async def serve_in(gateway: Gateway, serve_web: Serve, **options: Any) -> Any:
    """A web adapter started with ``gateway`` as its context, served by it."""
    await gateway.start()
    served = await serve_web(ctx=gateway, **options)
    gateway.adapters.append(served.adapter)
    return served


async def answer(ws: Any) -> tuple[list[str], dict[str, Any]]:
    """Streamed chunks and the final response of one turn."""
    chunks: list[str] = []
    while True:
        response = (await next_frame(ws, "response", wait=30))["response"]
        if response["kind"] == "answer":
            return chunks, response
        chunks.append(response["text"])


async def test_streamed_answer_and_stable_session_across_reconnects(
    gateway: Gateway, serve_web: Serve, llm_emulator: LlmEmulator
) -> None:
    served = await serve_in(gateway, serve_web)
    llm_emulator.reply_text("The answer is forty-two.", chunk_size=3)
    async with served.connect() as ws:
        hello, history = await greeted(ws)
        session = hello["session_id"]
        assert session
        assert history["session_id"] == session
        await ws.send('{"type": "message", "text": "what is the answer?"}')
        chunks, final = await answer(ws)
    assert len(chunks) > 1
    assert "".join(chunks) == "The answer is forty-two."
    assert final["text"] == "The answer is forty-two."
    assert final["session_id"] == session
    # A reload (a fresh connection of the same browser) keeps the session and shows it.
    async with served.connect() as ws:
        hello, history = await greeted(ws)
        assert hello["session_id"] == session
        assert history["messages"] == [
            {"role": "user", "text": "what is the answer?"},
            {"role": "assistant", "text": "The answer is forty-two."},
        ]
        llm_emulator.reply(lambda body: f"{len(body['messages'])} messages")
        await ws.send('{"type": "message", "text": "and now?"}')
        _, final = await answer(ws)
    assert final["text"] == "4 messages"  # system, the first exchange, this question


async def test_session_clear_and_switch(gateway: Gateway, serve_web: Serve) -> None:
    served = await serve_in(gateway, serve_web)
    async with served.connect() as ws:
        hello, _ = await greeted(ws)
        first = hello["session_id"]
        await ws.send('{"type": "message", "text": "/session"}')
        assert (await next_frame(ws, "notice"))["text"] == f"session: {first}"
        await ws.send('{"type": "message", "text": "/clear"}')
        notice = await next_frame(ws, "notice")
        moved = await next_frame(ws, "session")
        assert moved["session_id"] != first
        assert moved["messages"] == []
        assert notice["text"] == f"new session {moved['session_id']}"
        await ws.send('{"type": "message", "text": "/session ' + first + '"}')
        assert (await next_frame(ws, "notice"))[
            "text"
        ] == f"switched to session {first} (0 messages)"
        assert (await next_frame(ws, "session"))["session_id"] == first
        await ws.send('{"type": "message", "text": "/session bad id!"}')
        refused = await next_frame(ws, "notice")
        assert refused["is_error"]
        assert refused["text"].startswith("❌")
    async with served.connect() as ws:
        hello, _ = await greeted(ws)
        assert hello["session_id"] == first


async def test_an_unknown_session_id_is_said_to_be_new_with_the_likely_meant_one(
    gateway: Gateway, serve_web: Serve, llm_emulator: LlmEmulator
) -> None:
    served = await serve_in(gateway, serve_web)
    llm_emulator.reply_text("noted")
    async with served.connect() as ws:
        hello, _ = await greeted(ws)
        first = hello["session_id"]
        await ws.send('{"type": "message", "text": "remember the milk"}')
        await answer(ws)
        typo = first[:-1] + ("0" if first[-1] != "0" else "1")
        await ws.send('{"type": "message", "text": "/session ' + typo + '"}')
        notice = await next_frame(ws, "notice")
        assert not notice["is_error"]
        assert notice["text"] == (
            f"new session {typo}: no session had this id, so it starts empty\n"
            f"Did you mean /session {first} ?"
        )
        assert (await next_frame(ws, "session"))["messages"] == []
        await ws.send('{"type": "message", "text": "/session scratch-pad"}')
        notice = await next_frame(ws, "notice")
        assert (
            notice["text"] == "new session scratch-pad: no session had this id, so it starts empty"
        )
        await ws.send('{"type": "message", "text": "/session ' + first + '"}')
        notice = await next_frame(ws, "notice")
        assert notice["text"] == f"switched to session {first} (2 messages)"
        moved = await next_frame(ws, "session")
        assert [m["text"] for m in moved["messages"]] == ["remember the milk", "noted"]


async def test_model_shows_and_switches(gateway: Gateway, serve_web: Serve) -> None:
    served = await serve_in(gateway, serve_web)
    async with served.connect() as ws:
        await greeted(ws)
        await ws.send('{"type": "message", "text": "/model"}')
        assert "model: openai/gpt-4o-mini" in (await next_frame(ws, "notice"))["text"]
        await ws.send('{"type": "message", "text": "/model gpt-4o"}')
        assert (await next_frame(ws, "notice"))["text"] == "model: openai/gpt-4o (this session)"
        session = await gateway.session_for("web:client-0001")
        assert gateway.model_of(session) == ("openai", "gpt-4o")
        assert gateway.current_model == ("openai", "gpt-4o-mini")  # the other chats keep it
        await ws.send('{"type": "message", "text": "/model no-such-provider/x"}')
        assert (await next_frame(ws, "notice"))["text"].startswith("❌ cannot switch")
        await ws.send('{"type": "message", "text": "/help"}')
        assert "/clear" in (await next_frame(ws, "notice"))["text"]


async def test_a_context_that_runs_no_commands_gets_them_as_messages(serve_web: Serve) -> None:
    served = await serve_web()
    async with served.connect() as ws:
        await greeted(ws)
        await ws.send('{"type": "message", "text": "/model"}')
        assert (await served.event()).text == "/model"


async def test_image_reaches_the_llm(
    gateway: Gateway, serve_web: Serve, llm_emulator: LlmEmulator
) -> None:
    import base64

    served = await serve_in(gateway, serve_web)
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\1" * 32).decode()
    async with served.connect() as ws:
        await greeted(ws)
        image = {"name": "p.png", "mime_type": "image/png", "data": png}
        await ws.send(json.dumps({"type": "message", "text": "see", "attachments": [image]}))
        await answer(ws)
    sent = json.dumps(llm_emulator.requests[-1].json)
    assert png in sent


def is_final(frame: dict[str, Any]) -> bool:
    """Whether ``frame`` is the final answer of a turn (no chunk, tool step or request)."""
    return bool(frame["type"] == "response" and frame["response"]["kind"] == "answer")


async def frames_until(ws: Any, done: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Every frame up to and including the first one ``done`` accepts."""
    frames = [await next_frame(ws, wait=30)]
    while not done(frames[-1]):
        frames.append(await next_frame(ws, wait=30))
    return frames


async def test_an_approval_is_confirmed_once_by_a_decision_frame(
    serve_web: Serve, llm_emulator: LlmEmulator, tmp_path: Path
) -> None:
    from openpista.gateway.approvals import ApprovalBroker

    (tmp_path / "workspace").mkdir()
    marker = tmp_path / "approved-run"
    settings = emulator_settings(llm_emulator, tmp_path)
    runtime = await Runtime.open(settings, PluginHost.load(entry_points=False))
    broker = ApprovalBroker.from_settings(runtime.memory, settings.policy)
    gw = Gateway(runtime, [], approvals=broker)  # web is remote: the default policy asks
    try:
        served = await serve_in(gw, serve_web)
        llm_emulator.reply_tool_calls([("system_run", {"command": f"touch {marker}"})])
        llm_emulator.reply_text("done")
        async with served.connect() as ws:
            await greeted(ws)
            await ws.send('{"type": "message", "text": "make the file"}')
            asked = await frames_until(
                ws, lambda f: f.get("response", {}).get("kind") == "approval"
            )
            request = asked[-1]["response"]["request"]
            assert request["tool"] == "system.run"
            assert not marker.exists()
            await ws.send(json.dumps({"type": "approval", "id": request["id"], "approve": True}))
            after = await frames_until(ws, is_final)
            assert after[-1]["response"]["text"] == "done"
            assert marker.exists()
            [decision] = [f for f in after if f["type"] == "decision"]
            assert (decision["id"], decision["approve"], decision["ok"]) == (
                request["id"],
                True,
                True,
            )
            # The verdict is not a chat message of its own: the agent's answer is the only one.
            assert [f for f in after if is_final(f) or f["type"] == "notice"] == after[-1:]
            # Answering again (another tab, a double click) is refused in a decision frame.
            await ws.send(json.dumps({"type": "approval", "id": request["id"], "approve": False}))
            late = await next_frame(ws, "decision")
            assert late["ok"] is False
            assert late["text"].startswith("❌ no approval request")
    finally:
        await gw.stop(deadline=0)
        await runtime.close()
