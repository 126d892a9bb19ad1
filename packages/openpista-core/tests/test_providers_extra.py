"""Providers in depth: Anthropic bearer mode and transcripts, the Responses API, ChatGPT
subscription mode and the extended presets; the real litellm against the emulator."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pluggy
import pytest
from pydantic import SecretStr

import openpista.builtins.providers
import openpista.hookspecs
from openpista.config import AgentSettings, ProviderSettings, Settings
from openpista.models import Attachment, Message, ToolCall, ToolResult
from openpista.providers.base import (
    ChatResult,
    LlmProvider,
    ProviderError,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
)
from openpista.providers.registry import ProviderRegistry
from openpista.providers.responses import (
    ResponsesProvider,
    chatgpt_account_id,
    to_responses_input,
)
from openpista_testing.emulator import LlmEmulator, TextReply

KEY = "sk-test-secret-0123456789"
RUN = ToolSpec(
    name="system.run",
    description="Run a shell command.",
    parameters={"type": "object", "properties": {"command": {"type": "string"}}},
)
HI = [Message(role="user", content="hi")]


def registry() -> ProviderRegistry:
    pm = pluggy.PluginManager("openpista")
    pm.add_hookspecs(openpista.hookspecs)
    pm.register(openpista.builtins.providers)
    return ProviderRegistry.from_plugins(pm)


async def collect(provider: LlmProvider, messages: list[Message] = HI) -> list[StreamEvent]:
    return [event async for event in provider.stream(messages, [RUN])]


async def ask(provider: LlmProvider, streaming: bool) -> ChatResult:
    if streaming:
        result = (await collect(provider))[-1]
        assert isinstance(result, ChatResult)
        return result
    return await provider.complete(HI, [RUN])


TRANSCRIPT = [
    Message(role="system", content="be brief"),
    Message(role="user", content="list /tmp twice"),
    Message(
        role="assistant",
        content="Looking.",
        tool_calls=[
            ToolCall(id="call_1", name="system.run", arguments={"command": "ls /tmp"}),
            ToolCall(id="call_2", name="system.run", arguments={"command": "ls -a /tmp"}),
        ],
    ),
    Message(role="tool", tool_result=ToolResult(call_id="call_1", name="system.run", output="a")),
    Message(role="tool", tool_result=ToolResult(call_id="call_2", name="system.run", output="b")),
]


def build(preset: str, **section: Any) -> LlmProvider:
    options = {"max_retries": 0, "timeout": 10, "retry_base_delay": 0} | section
    settings = Settings(
        agent=AgentSettings(provider=preset),
        providers={preset: ProviderSettings.model_validate(options)},
    )
    return registry().build(settings)


async def streamed(provider: LlmProvider, messages: list[Message]) -> tuple[list[Any], ChatResult]:
    events = await collect(provider, messages)
    result = events[-1]
    assert isinstance(result, ChatResult)
    return events, result


# -- Anthropic -----------------------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
async def test_anthropic_bearer_mode_headers(llm_emulator: LlmEmulator, streaming: bool) -> None:
    provider = build("anthropic", base_url=llm_emulator.base_url, api_key=KEY, auth_header="bearer")
    if streaming:
        await collect(provider)
    else:
        await provider.complete([Message(role="user", content="hi")], [RUN])
    headers = llm_emulator.requests[-1].headers
    assert headers["authorization"] == f"Bearer {KEY}"
    assert "oauth-2025-04-20" in headers["anthropic-beta"]
    assert KEY not in headers.get("x-api-key", "")


async def test_anthropic_default_mode_uses_x_api_key(llm_emulator: LlmEmulator) -> None:
    await collect(build("anthropic", base_url=llm_emulator.base_url, api_key=KEY))
    headers = llm_emulator.requests[-1].headers
    assert headers["x-api-key"] == KEY
    assert "authorization" not in headers


async def test_anthropic_bearer_mode_errors_hide_the_token() -> None:
    with LlmEmulator(api_key="the-right-token") as emu:
        provider = build("anthropic", base_url=emu.base_url, api_key=KEY, auth_header="bearer")
        with pytest.raises(ProviderError) as caught:
            await collect(provider)
        assert caught.value.kind == "auth"
        assert KEY not in str(caught.value)
        with pytest.raises(ProviderError) as listing:
            await provider.list_models()
        assert KEY not in str(listing.value)


async def test_anthropic_bearer_mode_accepted_by_checking_server() -> None:
    with LlmEmulator(api_key=KEY) as emu:
        provider = build("anthropic", base_url=emu.base_url, api_key=KEY, auth_header="bearer")
        emu.reply_text("hello")
        _, result = await streamed(provider, [Message(role="user", content="hi")])
        assert result.text == "hello"
        assert await provider.list_models() == sorted(emu.models)


async def test_anthropic_transcript_with_streamed_tool_calls(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_tool_calls(
        [("system_run", {"command": "cat /tmp/a"}), ("system_run", {"command": "cat /tmp/b"})],
        text="Reading.",
        chunk_size=3,
    )
    provider = build("anthropic", base_url=llm_emulator.base_url, api_key=KEY)
    events, result = await streamed(provider, TRANSCRIPT)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Reading."
    fragments = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(fragments) > 4  # the arguments arrive in pieces
    assert {e.name for e in fragments if e.name} == {"system.run"}
    assert [(c.name, c.arguments) for c in result.tool_calls] == [
        ("system.run", {"command": "cat /tmp/a"}),
        ("system.run", {"command": "cat /tmp/b"}),
    ]
    sent = llm_emulator.requests[-1].json
    assert "be brief" in json.dumps(sent["system"])  # lifted out of the messages
    assert all(m["role"] != "system" for m in sent["messages"])
    assert [t["name"] for t in sent["tools"]] == ["system_run"]
    last = sent["messages"][-1]
    assert last["role"] == "user"
    results = [b for b in last["content"] if b["type"] == "tool_result"]
    assert [b["tool_use_id"] for b in results] == ["call_1", "call_2"]  # merged into one turn
    uses = [b for b in sent["messages"][-2]["content"] if b["type"] == "tool_use"]
    assert [u["name"] for u in uses] == ["system_run", "system_run"]
    assert "system.run" not in json.dumps(sent)


# -- Responses API -------------------------------------------------------------------------------


def responses(emu: LlmEmulator, **section: Any) -> LlmProvider:
    provider = build(
        "openai", base_url=emu.openai_base_url, api_key=KEY, api="responses", **section
    )
    assert isinstance(provider, ResponsesProvider)
    return provider


def test_chat_is_the_default_openai_api(llm_emulator: LlmEmulator) -> None:
    provider = build("openai", base_url=llm_emulator.openai_base_url, api_key=KEY)
    assert not isinstance(provider, ResponsesProvider)


async def test_responses_text_stream(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_text("one two three four", chunk_size=4, usage=(11, 4))
    events, result = await streamed(responses(llm_emulator), [Message(role="user", content="hi")])
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 2
    assert "".join(deltas) == result.text == "one two three four"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (11, 4)
    request = llm_emulator.requests[-1]
    assert request.path == "/v1/responses"
    assert request.json["stream"] is True
    assert request.headers["authorization"] == f"Bearer {KEY}"


async def test_responses_empty_answer_is_an_error(llm_emulator: LlmEmulator) -> None:
    hi = [Message(role="user", content="hi")]
    llm_emulator.reply_text("")
    with pytest.raises(ProviderError) as streaming:
        await streamed(responses(llm_emulator), hi)
    llm_emulator.reply_text("")
    with pytest.raises(ProviderError) as whole:
        await responses(llm_emulator).complete(hi, [])
    assert streaming.value.kind == whole.value.kind == "empty"


async def test_responses_transcript_with_streamed_tool_calls(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_tool_calls(
        [("system_run", {"command": "cat /tmp/a"}), ("other_tool", {"n": 2})],
        text="Reading.",
        chunk_size=4,
        usage=(30, 12),
    )
    events, result = await streamed(responses(llm_emulator), TRANSCRIPT)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Reading."
    fragments = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [e.name for e in fragments if e.name] == ["system.run", "other_tool"]
    assert len(fragments) > 4
    assert [(c.name, c.arguments) for c in result.tool_calls] == [
        ("system.run", {"command": "cat /tmp/a"}),
        ("other_tool", {"n": 2}),
    ]
    assert len({c.id for c in result.tool_calls}) == 2
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (30, 12)
    sent = llm_emulator.requests[-1].json
    assert sent["instructions"] == "be brief"
    assert [t["name"] for t in sent["tools"]] == ["system_run"]
    kinds = [item.get("type", item.get("role")) for item in sent["input"]]
    assert kinds == [
        "user",
        "assistant",
        "function_call",
        "function_call",
        "function_call_output",
        "function_call_output",
    ]
    assert "system.run" not in json.dumps(sent)


async def test_responses_complete(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_tool_calls([("system_run", {"command": "ls"})], text="Sure.", usage=(5, 2))
    result = await responses(llm_emulator).complete(TRANSCRIPT, [RUN])
    assert result.text == "Sure."
    assert [(c.name, c.arguments) for c in result.tool_calls] == [("system.run", {"command": "ls"})]
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (5, 2)
    assert llm_emulator.requests[-1].json.get("stream") in (None, False)


@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize(
    ("status", "kind"), [(401, "auth"), (404, "not_found"), (400, "bad_request"), (500, "other")]
)
async def test_responses_errors(
    llm_emulator: LlmEmulator, streaming: bool, status: int, kind: str
) -> None:
    llm_emulator.reply_error(status, f"went wrong {KEY}")
    provider = responses(llm_emulator)
    with pytest.raises(ProviderError) as caught:
        await ask(provider, streaming)
    assert caught.value.kind == kind
    assert KEY not in str(caught.value)


async def test_responses_rate_limit_retried(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_error(429, "slow down", retry_after=0)
    llm_emulator.reply_text("finally")
    _, result = await streamed(
        responses(llm_emulator, max_retries=1), [Message(role="user", content="hi")]
    )
    assert result.text == "finally"
    assert len(llm_emulator.requests) == 2


async def test_responses_failing_mid_stream_is_a_clear_error(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply(TextReply("Half an ans", fail_with=f"overloaded while serving {KEY}"))
    provider = responses(llm_emulator)
    deltas: list[str] = []

    async def read_all() -> None:
        async for event in provider.stream(HI, []):
            if isinstance(event, TextDelta):
                deltas.append(event.text)

    with pytest.raises(ProviderError) as caught:
        await read_all()
    assert "".join(deltas) == "Half an ans", "what arrived before the failure was streamed"
    message = str(caught.value)
    assert message.startswith("openai failed (HTTP 500): overloaded while serving ***")
    assert "Original exception" not in message
    assert KEY not in message, "a key echoed by the server is not repeated"


def test_responses_input_mapping() -> None:
    instructions, items = to_responses_input(TRANSCRIPT)
    assert instructions == "be brief"
    assert items[2] == {
        "type": "function_call",
        "call_id": "call_1",
        "name": "system_run",
        "arguments": json.dumps({"command": "ls /tmp"}),
    }
    assert items[-1] == {"type": "function_call_output", "call_id": "call_2", "output": "b"}


def test_responses_input_carries_pictures_as_input_images() -> None:
    picture = Attachment(name="a.png", mime_type="image/png", data="AAAA")
    shot = ToolResult(call_id="c1", name="screen.capture", output="ok", attachments=[picture])
    _, items = to_responses_input(
        [
            Message(role="user", content="look", attachments=[picture]),
            Message(role="tool", tool_result=shot),
        ]
    )
    image = {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}
    assert items[0]["content"] == [{"type": "input_text", "text": "look"}, image]
    assert items[1]["type"] == "function_call_output"
    assert items[2]["role"] == "user"
    assert items[2]["content"][1] == image


# -- ChatGPT subscription mode -------------------------------------------------------------------


def id_token(claims: dict[str, Any]) -> str:
    payload = {"iss": "https://auth.openai.com", "exp": int(time.time()) + 3600} | claims
    return jwt.encode(payload, "not-the-real-signing-key-0123456789abcdef", algorithm="HS256")


def test_chatgpt_account_id_from_claims() -> None:
    token = id_token({"https://api.openai.com/auth": {"chatgpt_account_id": "acct-42"}})
    assert chatgpt_account_id(token) == "acct-42"
    assert chatgpt_account_id(id_token({"email": "a@b.c"})) is None
    assert chatgpt_account_id("not a jwt") is None


async def test_chatgpt_mode_sends_the_account_header(llm_emulator: LlmEmulator) -> None:
    token = id_token({"https://api.openai.com/auth": {"chatgpt_account_id": "acct-42"}})
    llm_emulator.reply_text("from the subscription")
    provider = responses(llm_emulator, id_token=SecretStr(token))
    _, result = await streamed(provider, [Message(role="user", content="hi")])
    assert result.text == "from the subscription"
    request = llm_emulator.requests[-1]
    assert request.headers["chatgpt-account-id"] == "acct-42"
    assert request.json["store"] is False
    assert token not in json.dumps(request.headers)


async def test_chatgpt_explicit_account_and_base_url(llm_emulator: LlmEmulator) -> None:
    # The base URL is configurable: here the server root, so the request goes to /responses.
    llm_emulator.reply_text("ok")
    provider = build(
        "openai", base_url=llm_emulator.base_url, api_key=KEY, api="responses", account_id="acct-7"
    )
    await collect(provider)
    request = llm_emulator.requests[-1]
    assert request.path == "/responses"
    assert request.headers["chatgpt-account-id"] == "acct-7"


# -- extended presets ----------------------------------------------------------------------------

EXTENDED = ["github_copilot", "gemini", "vercel_ai_gateway", "azure", "bedrock"]


def test_extended_presets_registered() -> None:
    names = registry().names()
    for name in EXTENDED:
        assert name in names
    assert registry().problems == []


@pytest.mark.parametrize("preset", ["github_copilot", "vercel_ai_gateway"])
async def test_openai_compatible_extended_presets(llm_emulator: LlmEmulator, preset: str) -> None:
    llm_emulator.reply_text(f"hello from {preset}")
    provider = build(preset, base_url=llm_emulator.openai_base_url, api_key=KEY)
    result = await provider.complete([Message(role="user", content="hi")], [])
    assert result.text == f"hello from {preset}"
    headers = llm_emulator.requests[-1].headers
    assert headers["authorization"] == f"Bearer {KEY}"
    if preset == "github_copilot":
        assert headers["copilot-integration-id"] == "vscode-chat"
        assert headers["editor-version"]


@pytest.mark.parametrize(
    ("preset", "env"),
    [
        ("github_copilot", "GITHUB_COPILOT_TOKEN"),
        ("gemini", "GEMINI_API_KEY"),
        ("vercel_ai_gateway", "AI_GATEWAY_API_KEY"),
        ("azure", "AZURE_API_KEY"),
    ],
)
def test_extended_presets_take_keys_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, preset: str, env: str
) -> None:
    monkeypatch.setenv(env, "from-env")
    settings = Settings(
        agent=AgentSettings(provider=preset),
        providers={preset: ProviderSettings(base_url="https://example.invalid")},
    )
    provider = registry().build(settings)
    assert provider.name == preset
    assert getattr(provider, "settings").api_key.get_secret_value() == "from-env"  # noqa: B009


async def test_azure_streams_from_its_deployment_with_api_key_header(
    llm_emulator: LlmEmulator,
) -> None:
    emu_root = llm_emulator.openai_base_url.removesuffix("/v1")
    llm_emulator.reply_tool_calls([("system_run", {"command": "uptime"})])
    provider = build(
        "azure", base_url=emu_root, api_key=KEY, api_version="2024-10-21", model="my-deploy"
    )
    _, result = await streamed(provider, HI)
    assert [(c.name, c.arguments) for c in result.tool_calls] == [
        ("system.run", {"command": "uptime"})
    ]
    request = llm_emulator.requests[-1]
    assert request.path == "/openai/deployments/my-deploy/chat/completions"
    assert request.headers["api-key"] == KEY


def test_azure_needs_its_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_API_KEY", "k")
    with pytest.raises(ProviderError) as caught:
        registry().build(Settings(agent=AgentSettings(provider="azure")))
    assert caught.value.kind == "config"


def test_bedrock_needs_no_key_and_gets_no_placeholder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK", raising=False)
    provider = registry().build(Settings(agent=AgentSettings(provider="bedrock")))
    assert provider.model.startswith("anthropic.claude")
    assert getattr(provider, "_api_key")() is None  # noqa: B009
