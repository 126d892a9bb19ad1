"""End to end over real HTTP: signed webhook POST -> adapter -> real Gateway and Agent
(litellm against the LLM emulator, SQLite memory) -> answer -> Graph API emulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from openpista.gateway.gateway import Gateway
from openpista_testing.cli import emulator_settings
from openpista_testing.contracts import ChannelContract
from openpista_testing.emulator import LlmEmulator
from openpista_testing.gateways import Gateways
from openpista_whatsapp.adapter import WhatsAppAdapter
from openpista_whatsapp.settings import load_whatsapp_config
from openpista_whatsapp.testing import (
    WhatsAppEmulator,
    message,
    signed_post,
    text_payload,
    webhook_payload,
)

NUMBER = "111111"
USER = "4915550001"
OTHER = "4915550002"


class Deployment:
    """The gateway with the WhatsApp adapter, and Meta's side of the webhook."""

    def __init__(self, gateway: Gateway, adapter: WhatsAppAdapter, secret: str) -> None:
        self.gateway = gateway
        self.adapter = adapter
        self.secret = secret
        self.http = httpx.AsyncClient(timeout=10)

    async def post(self, payload: dict[str, Any]) -> None:
        body, headers = signed_post(payload, self.secret)
        url = f"http://127.0.0.1:{self.adapter.port}/webhook"
        answer = await self.http.post(url, content=body, headers=headers)
        assert answer.status_code == 200


@pytest.fixture
async def deployment(
    tmp_path: Path,
    llm_emulator: LlmEmulator,
    whatsapp_table: Callable[..., dict[str, Any]],
    gateways: Gateways,
) -> AsyncIterator[Deployment]:
    table = whatsapp_table(allowed_numbers=[USER, OTHER])
    adapter = WhatsAppAdapter(load_whatsapp_config(table))
    gateway = await gateways.start(emulator_settings(llm_emulator, tmp_path), adapter)
    deployed = Deployment(gateway, adapter, table["app_secret"])
    yield deployed
    await deployed.http.aclose()


async def test_a_signed_message_is_answered_on_whatsapp(
    deployment: Deployment, llm_emulator: LlmEmulator, graph: WhatsAppEmulator
) -> None:
    llm_emulator.reply_text("Hello from openpista")
    await deployment.post(text_payload(NUMBER, USER, "hi agent"))
    (sent,) = await graph.wait_for_sent(1)
    assert (sent.phone_number_id, sent.body["to"]) == (NUMBER, USER)
    assert sent.body["text"]["body"] == "Hello from openpista"
    prompt = llm_emulator.requests[0].json["messages"][-1]["content"]
    assert "hi agent" in str(prompt)


async def test_each_sender_has_a_stable_session(
    deployment: Deployment, llm_emulator: LlmEmulator, graph: WhatsAppEmulator
) -> None:
    llm_emulator.reply_text("noted, Ada")
    await deployment.post(text_payload(NUMBER, USER, "I am Ada"))
    await graph.wait_for_sent(1)
    llm_emulator.reply_text("hello stranger")
    await deployment.post(text_payload(NUMBER, OTHER, "who am I?"))
    await graph.wait_for_sent(2)
    llm_emulator.reply_text("You are Ada")
    await deployment.post(text_payload(NUMBER, USER, "who am I?"))
    sent = await graph.wait_for_sent(3)
    assert [(s.body["to"], s.body["text"]["body"]) for s in sent] == [
        (USER, "noted, Ada"),
        (OTHER, "hello stranger"),
        (USER, "You are Ada"),
    ]
    other_history = [str(m["content"]) for m in llm_emulator.requests[1].json["messages"][1:]]
    assert not any("Ada" in text for text in other_history)
    ada_history = [str(m["content"]) for m in llm_emulator.requests[2].json["messages"][1:]]
    assert any("I am Ada" in text for text in ada_history)
    sessions = deployment.gateway.router
    first = await sessions.session_for(f"whatsapp:{USER}")
    assert first == await sessions.session_for(f"whatsapp:{USER}")
    assert first != await sessions.session_for(f"whatsapp:{OTHER}")


async def test_approval_buttons_answer_the_request(
    deployment: Deployment, llm_emulator: LlmEmulator, graph: WhatsAppEmulator
) -> None:
    llm_emulator.reply_tool_calls([("system_run", {"command": "echo approved-$((40 + 2))"})])
    llm_emulator.reply_text("it ran")
    await deployment.post(text_payload(NUMBER, USER, "please run the echo"))
    (request,) = await graph.wait_for_sent(1)
    assert request.body["type"] == "interactive"
    approve = request.body["interactive"]["action"]["buttons"][0]["reply"]
    assert approve["id"].startswith("approve:")
    press = {"type": "button_reply", "button_reply": {"id": approve["id"], "title": "✅ Approve"}}
    await deployment.post(webhook_payload(NUMBER, [message(USER, "interactive", press)]))
    sent = await graph.wait_for_sent(3)
    texts = [s.body["text"]["body"] for s in sent[1:]]
    assert texts[0].startswith("✅ approved system.run")
    assert texts[1] == "it ran"
    tool_output = [
        str(m.get("content"))
        for m in llm_emulator.requests[1].json["messages"]
        if m["role"] == "tool"
    ]
    assert any("approved-42" in out for out in tool_output)


async def test_bad_input_leaves_the_gateway_serving(
    deployment: Deployment, llm_emulator: LlmEmulator, graph: WhatsAppEmulator
) -> None:
    url = f"http://127.0.0.1:{deployment.adapter.port}/webhook"
    forged = await deployment.http.post(url, content=b'{"object": 1}', headers={})
    assert forged.status_code == 401
    await deployment.post(webhook_payload(NUMBER, [message(USER, "poll", {})]))
    body, headers = signed_post(b"[1, 2", deployment.secret)
    assert (await deployment.http.post(url, content=body, headers=headers)).status_code == 400
    llm_emulator.reply_text("still here")
    await deployment.post(text_payload(NUMBER, USER, "are you there?"))
    (sent,) = await graph.wait_for_sent(1)
    assert sent.body["text"]["body"] == "still here"
    assert len(llm_emulator.requests) == 1


class TestWhatsAppChannelContract(ChannelContract):
    """The shared channel contract, through the webhook and the Graph API emulator."""

    @pytest.fixture(autouse=True)
    def _emulator(
        self, graph: WhatsAppEmulator, whatsapp_table: Callable[..., dict[str, Any]]
    ) -> None:
        self.graph = graph
        self.table = whatsapp_table()

    async def make_adapter(self) -> WhatsAppAdapter:
        return WhatsAppAdapter(load_whatsapp_config(self.table))

    async def deliver(self, adapter: Any, text: str) -> None:
        body, headers = signed_post(text_payload(NUMBER, USER, text), self.table["app_secret"])
        async with httpx.AsyncClient() as http:
            url = f"http://127.0.0.1:{adapter.port}/webhook"
            assert (await http.post(url, content=body, headers=headers)).status_code == 200

    async def received(self, adapter: Any) -> list[str]:
        await asyncio.sleep(0)
        shown = []
        for sent in self.graph.sent:
            if sent.body["type"] == "text":
                shown.append(sent.body["text"]["body"])
            elif sent.body["type"] == "interactive":  # buttons: their ids name the request
                buttons = sent.body["interactive"]["action"]["buttons"]
                shown.append(" ".join(b["reply"]["id"] for b in buttons))
        return shown
