"""Providers against the LLM emulator, in OpenAI and Anthropic wire formats, each through
both clients (openpista's httpx path and the real litellm)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from typing import Any, Literal

import pluggy
import pytest
from pydantic import SecretStr

import openpista.builtins.providers
import openpista.hookspecs
from openpista.config import AgentSettings, ConfigError, ProviderSettings, Settings
from openpista.models import Message, ToolCall, ToolResult, Usage
from openpista.providers.base import (
    ChatResult,
    LlmProvider,
    ProviderError,
    ProviderPreset,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
)
from openpista.providers.litellm_provider import BackendProvider
from openpista.providers.registry import ProviderRegistry
from openpista_testing.contracts import ProviderContract
from openpista_testing.emulator import LlmEmulator, TextReply, ToolCallsReply

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


def base_url(emu: LlmEmulator, api: str) -> str:
    return emu.openai_base_url if api == "openai" else emu.base_url


Client = Literal["auto", "litellm", "http"]


class Api(str):
    """A preset name, and the ``client`` that carries its requests."""

    client: Client = "auto"


def preset(name: str, client: Client) -> Api:
    api = Api(name)
    api.client = client
    return api


def make(emu: LlmEmulator, api: str, **options: Any) -> LlmProvider:
    """A provider of preset ``api`` pointed at the emulator (no retries unless asked)."""
    section = {"base_url": base_url(emu, api), "api_key": KEY, "max_retries": 0, "timeout": 10}
    section |= {"retry_base_delay": 0, "client": getattr(api, "client", "auto")} | options
    settings = Settings(
        agent=AgentSettings(provider=api),
        providers={api: ProviderSettings.model_validate(section)},
    )
    return registry().build(settings)


async def collect(provider: LlmProvider, messages: list[Message] = HI) -> list[StreamEvent]:
    return [event async for event in provider.stream(messages, [RUN])]


async def ask(provider: LlmProvider, streaming: bool) -> ChatResult:
    if not streaming:
        return await provider.complete(HI, [RUN])
    events = await collect(provider)
    assert isinstance(events[-1], ChatResult)
    return events[-1]


@pytest.fixture(
    params=[
        ("openai", "http"),
        ("openai", "litellm"),
        ("anthropic", "http"),
        ("anthropic", "litellm"),
    ],
    ids=["openai-http", "openai-litellm", "anthropic-http", "anthropic-litellm"],
)
def api(request: pytest.FixtureRequest) -> Api:
    return preset(*request.param)


clients = pytest.mark.parametrize("client", ["http", "litellm"])


streaming = pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])


# -- answers ------------------------------------------------------------------------------------


async def test_text_complete(llm_emulator: LlmEmulator, api: str) -> None:
    llm_emulator.reply_text("Hello there", usage=(21, 5))
    result = await make(llm_emulator, api).complete(HI, [])
    assert result.text == "Hello there"
    assert result.tool_calls == []
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (21, 5)


async def test_text_stream_arrives_in_order(llm_emulator: LlmEmulator, api: str) -> None:
    llm_emulator.reply_text("one two three four five", chunk_size=4, usage=(9, 6))
    events = await collect(make(llm_emulator, api))
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 3
    assert "".join(deltas) == "one two three four five"
    assert [type(e) for e in events].count(ChatResult) == 1
    result = events[-1]
    assert isinstance(result, ChatResult)
    assert result.text == "one two three four five"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (9, 6)
    request = llm_emulator.requests[-1]
    assert request.json["stream"] is True
    assert request.json["model"] == (
        "gpt-4o-mini" if api == "openai" else "claude-3-5-haiku-latest"
    )


@streaming
async def test_several_tool_calls_map_back_to_internal_names(
    llm_emulator: LlmEmulator, api: str, streaming: bool
) -> None:
    calls: list[tuple[str, dict[str, Any] | str]] = [
        ("system_run", {"command": "ls /tmp"}),
        ("other_tool", {"n": 2}),
    ]
    llm_emulator.reply_tool_calls(calls, text="Looking.", chunk_size=5)
    result = await ask(make(llm_emulator, api), streaming)
    assert [(c.name, c.arguments, c.raw_arguments) for c in result.tool_calls] == [
        ("system.run", {"command": "ls /tmp"}, None),
        ("other_tool", {"n": 2}, None),  # an unknown wire name passes through unchanged
    ]
    assert all(c.id for c in result.tool_calls)
    assert len({c.id for c in result.tool_calls}) == 2
    assert result.text == "Looking."
    offered = llm_emulator.requests[-1].json["tools"]
    assert "system.run" not in json.dumps(offered)
    assert "system_run" in json.dumps(offered)


async def test_tool_call_deltas(llm_emulator: LlmEmulator, api: str) -> None:
    llm_emulator.reply_tool_calls([("system_run", {"command": "ls"}), ("system_run", {})])
    events = await collect(make(llm_emulator, api))
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [d.index for d in deltas if d.name] == [0, 1]
    assert {d.name for d in deltas if d.name} == {"system.run"}
    first = "".join(d.arguments for d in deltas if d.index == 0)
    assert json.loads(first) == {"command": "ls"}


@streaming
async def test_malformed_tool_arguments_are_kept_raw(
    llm_emulator: LlmEmulator, api: str, streaming: bool
) -> None:
    llm_emulator.reply_tool_calls([("system_run", '{"command": "ls'), ("system_run", "[1, 2]")])
    result = await ask(make(llm_emulator, api), streaming)
    broken, not_object = result.tool_calls
    assert broken.name == "system.run"
    assert broken.arguments == {}
    assert broken.raw_arguments is not None
    assert '"command": "ls' in broken.raw_arguments
    assert not_object.arguments == {}
    assert not_object.raw_arguments is not None
    assert "1, 2" in not_object.raw_arguments


async def test_tool_round_trip_conversation(llm_emulator: LlmEmulator, api: str) -> None:
    def echo_tool_result(request: dict[str, Any]) -> str:
        last = request["messages"][-1]
        if last["role"] == "tool":  # OpenAI format
            return f"saw {last['content']}"
        block = last["content"][-1]  # Anthropic: a user turn holding a tool_result block
        assert block["type"] == "tool_result"
        content = block["content"]
        return f"saw {content if isinstance(content, str) else content[0]['text']}"

    llm_emulator.reply(echo_tool_result)
    call = ToolCall(id="call_1", name="system.run", arguments={"command": "ls"})
    broken = ToolCall(id="call_2", name="system.run", raw_arguments="{oops")
    conversation = [
        Message(role="system", content="be brief"),
        Message(role="user", content="list /tmp"),
        Message(role="assistant", content="", tool_calls=[call, broken]),
        Message(
            role="tool", tool_result=ToolResult(call_id="call_1", name="system.run", output="a.txt")
        ),
        Message(
            role="tool",
            tool_result=ToolResult(
                call_id="call_2", name="system.run", output="bad arguments", is_error=True
            ),
        ),
    ]
    result = await make(llm_emulator, api).complete(conversation, [RUN])
    assert result.text == "saw bad arguments"
    sent = json.dumps(llm_emulator.requests[-1].json)
    assert "system_run" in sent
    assert "system.run" not in sent
    assert "be brief" in sent


@clients
async def test_a_plain_json_answer_to_a_stream_request_is_used(
    llm_emulator: LlmEmulator, client: Client
) -> None:
    # Some OpenAI-compatible servers ignore "stream": true and send the whole completion.
    llm_emulator.reply(TextReply("Hello in one piece", usage=(9, 4), unstreamed=True))
    openai = preset("openai", client)
    events = await collect(make(llm_emulator, openai))
    assert llm_emulator.requests[0].json["stream"] is True
    assert events == [
        TextDelta("Hello in one piece"),
        ChatResult(text="Hello in one piece", usage=Usage(prompt_tokens=9, completion_tokens=4)),
    ]
    llm_emulator.reply(
        ToolCallsReply(
            [("system_run", {"command": "ls /tmp"})], text="Let me look.", unstreamed=True
        )
    )
    [first, result] = await collect(make(llm_emulator, openai))
    assert first == TextDelta("Let me look.")
    assert isinstance(result, ChatResult)
    [call] = result.tool_calls
    assert (call.name, call.arguments) == ("system.run", {"command": "ls /tmp"})


@streaming
async def test_an_empty_answer_is_an_error_not_a_blank_reply(
    llm_emulator: LlmEmulator, api: str, streaming: bool
) -> None:
    llm_emulator.reply_text("")
    provider = make(llm_emulator, api)
    error = await failure(provider, streaming)
    assert error.kind == "empty"
    assert f"{api} sent an empty answer (no text, no tool call)" in str(error)
    assert f"'{provider.model}'" in str(error)


# -- errors -------------------------------------------------------------------------------------


async def failure(provider: LlmProvider, streaming: bool) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await ask(provider, streaming)
    error = caught.value
    assert KEY not in str(error), "never show the API key"
    assert "Traceback" not in str(error)
    return error


@streaming
@pytest.mark.parametrize("status", [401, 403])
async def test_rejected_key(
    llm_emulator: LlmEmulator, api: str, streaming: bool, status: int
) -> None:
    llm_emulator.reply_error(status, f"bad key {KEY}")
    error = await failure(make(llm_emulator, api), streaming)
    assert (error.kind, error.status) == ("auth", status)
    env = "OPENAI_API_KEY" if api == "openai" else "ANTHROPIC_API_KEY"
    for part in (f"HTTP {status}", env, f"[providers.{api}] api_key"):
        assert part in str(error)


@streaming
async def test_unknown_model(llm_emulator: LlmEmulator, api: str, streaming: bool) -> None:
    llm_emulator.reply_error(404, "The model does not exist")
    error = await failure(make(llm_emulator, api, model="gpt-99"), streaming)
    assert error.kind == "not_found"
    assert "'gpt-99'" in str(error)
    assert "openpista model list" in str(error)


@streaming
async def test_rate_limit_retried_then_succeeds(
    llm_emulator: LlmEmulator, api: str, streaming: bool
) -> None:
    llm_emulator.reply_error(429, "slow down", retry_after=0)
    llm_emulator.reply_error(429, "slow down")
    llm_emulator.reply_text("finally")
    result = await ask(make(llm_emulator, api, max_retries=2), streaming)
    assert result.text == "finally"
    assert len(llm_emulator.requests) == 3


@streaming
async def test_rate_limit_exhausted(llm_emulator: LlmEmulator, api: str, streaming: bool) -> None:
    for _ in range(3):
        llm_emulator.reply_error(429, "slow down", retry_after=0)
    llm_emulator.reply_text("too late")
    error = await failure(make(llm_emulator, api, max_retries=2), streaming)
    assert error.kind == "rate_limit"
    assert "2 retries" in str(error)
    assert f"[providers.{api}] max_retries" in str(error)
    assert len(llm_emulator.requests) == 3


@clients
@streaming
async def test_out_of_quota_is_a_billing_error_and_is_not_retried(
    llm_emulator: LlmEmulator, streaming: bool, client: Client
) -> None:
    # OpenAI's documented 429 for an account without credit: type and code insufficient_quota.
    quota = "You exceeded your current quota, please check your plan and billing details."
    llm_emulator.reply_error(
        429, quota, error_type="insufficient_quota", code="insufficient_quota", retry_after=0
    )
    llm_emulator.reply_text("must not be reached")
    error = await failure(make(llm_emulator, preset("openai", client), max_retries=3), streaming)
    assert (error.kind, error.status) == ("quota", 429)
    assert "billing problem, not a rate limit" in str(error)
    assert "rate-limiting" not in str(error)
    assert quota in str(error)
    assert len(llm_emulator.requests) == 1
    assert llm_emulator.pending == 1


async def test_other_errors_are_not_retried(llm_emulator: LlmEmulator, api: str) -> None:
    llm_emulator.reply_error(500, "boom")
    error = await failure(make(llm_emulator, api, max_retries=3), streaming=False)
    assert (error.kind, error.status) == ("other", 500)
    assert len(llm_emulator.requests) == 1


@streaming
async def test_server_error_with_garbage_body(
    llm_emulator: LlmEmulator, api: str, streaming: bool
) -> None:
    llm_emulator.reply_error(500, raw_body="<html><body>502 Bad Gateway \x00\xff</body></html>")
    error = await failure(make(llm_emulator, api), streaming)
    assert error.kind == "other"
    assert "HTTP 500" in str(error)
    assert "Bad Gateway" in str(error)


async def test_bad_request(llm_emulator: LlmEmulator, api: str) -> None:
    llm_emulator.reply_error(400, "messages: too many tokens")
    error = await failure(make(llm_emulator, api), streaming=True)
    assert error.kind == "bad_request"
    assert "too many tokens" in str(error)


@streaming
async def test_unreachable_server(api: Api, streaming: bool) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}" + ("/v1" if api == "openai" else "")
    settings = Settings(
        agent=AgentSettings(provider=api),
        providers={
            api: ProviderSettings(
                base_url=url, api_key=SecretStr(KEY), max_retries=0, client=api.client
            )
        },
    )
    error = await failure(registry().build(settings), streaming)
    assert error.kind == "unreachable"
    assert url in str(error)
    assert "base_url" in str(error)


@streaming
async def test_timeout(llm_emulator: LlmEmulator, api: str, streaming: bool) -> None:
    llm_emulator.reply_text("late", delay=3)
    error = await failure(make(llm_emulator, api, timeout=0.5), streaming)
    assert error.kind == "timeout"
    assert "0.5 s" in str(error)
    assert f"[providers.{api}] timeout" in str(error)


async def test_wrong_key_against_checking_server(api: str) -> None:
    with LlmEmulator(api_key="the-right-key") as emu:
        error = await failure(make(emu, api), streaming=True)
        assert error.kind == "auth"


# -- other presets, model listing ---------------------------------------------------------------


@clients
@pytest.mark.parametrize("name", ["together", "openrouter", "custom"])
async def test_openai_compatible_presets(
    llm_emulator: LlmEmulator, name: str, client: Client
) -> None:
    llm_emulator.reply_text(f"hello from {name}")
    section = ProviderSettings(
        base_url=llm_emulator.openai_base_url, api_key=SecretStr(KEY), client=client
    )
    settings = Settings(
        agent=AgentSettings(provider=name, model="some/model"), providers={name: section}
    )
    provider = registry().build(settings)
    assert (provider.name, provider.model) == (name, "some/model")
    assert (await provider.complete(HI, [])).text == f"hello from {name}"
    assert llm_emulator.requests[-1].headers["authorization"] == f"Bearer {KEY}"


@clients
async def test_keyless_custom_server_never_gets_the_openai_key(
    llm_emulator: LlmEmulator, monkeypatch: pytest.MonkeyPatch, client: Client
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-users-real-openai-key")
    section = ProviderSettings(base_url=llm_emulator.openai_base_url, client=client)
    settings = Settings(agent=AgentSettings(provider="custom"), providers={"custom": section})
    await registry().build(settings).complete(HI, [])
    assert "sk-users-real-openai-key" not in json.dumps(llm_emulator.requests[-1].headers)


async def test_list_models(llm_emulator: LlmEmulator, api: str) -> None:
    models = await make(llm_emulator, api).list_models()
    assert models == sorted(llm_emulator.models)
    assert llm_emulator.requests[-1].path == "/v1/models"


async def test_list_models_errors_name_the_fix(api: str) -> None:
    with LlmEmulator(api_key="the-right-key") as emu:
        with pytest.raises(ProviderError) as caught:
            await make(emu, api).list_models()
        assert caught.value.kind == "auth"
        assert KEY not in str(caught.value)


# -- ollama (its native /api/chat, not the OpenAI dialect) ----------------------------------------


def ollama(emu: LlmEmulator) -> LlmProvider:
    section = ProviderSettings(base_url=emu.base_url, max_retries=0, timeout=10)
    settings = Settings(agent=AgentSettings(provider="ollama"), providers={"ollama": section})
    return registry().build(settings)


async def test_ollama_text_and_usage(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_text("local answer", usage=(7, 3))
    events = await collect(ollama(llm_emulator))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "local answer"
    result = events[-1]
    assert isinstance(result, ChatResult)
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (7, 3)
    assert llm_emulator.requests[-1].path == "/api/chat"


@streaming
async def test_ollama_tool_calls(llm_emulator: LlmEmulator, streaming: bool) -> None:
    llm_emulator.reply_tool_calls([("system_run", {"command": "ls"}), ("system_run", "{bad")])
    result = await ask(ollama(llm_emulator), streaming)
    good, bad = result.tool_calls
    assert (good.name, good.arguments) == ("system.run", {"command": "ls"})
    assert (bad.name, bad.arguments, bad.raw_arguments) == ("system.run", {}, "{bad")
    assert good.id
    assert bad.id
    assert good.id != bad.id


async def test_ollama_unknown_model_and_listing(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_error(404, "model 'llama3.1' not found, try pulling it first")
    error = await failure(ollama(llm_emulator), streaming=True)
    assert error.kind == "not_found"
    assert "'llama3.1'" in str(error)
    assert await ollama(llm_emulator).list_models() == sorted(llm_emulator.models)
    assert llm_emulator.requests[-1].path == "/api/tags"


async def test_ollama_not_running() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    section = ProviderSettings(base_url=url, max_retries=0)
    settings = Settings(agent=AgentSettings(provider="ollama"), providers={"ollama": section})
    error = await failure(registry().build(settings), streaming=True)
    assert error.kind == "unreachable"
    assert "ollama serve" in str(error)
    assert url in str(error)


# -- registry -----------------------------------------------------------------------------------


def test_registry_names_aliases_and_unknown() -> None:
    providers = registry()
    assert providers.names() == [
        "openai",
        "anthropic",
        "together",
        "ollama",
        "openrouter",
        "custom",
        "github_copilot",
        "gemini",
        "vercel_ai_gateway",
        "azure",
        "bedrock",
    ]
    assert providers.get("claude").name == "anthropic"
    assert "Claude" in providers
    assert providers.problems == []
    with pytest.raises(ConfigError, match=r"unknown provider 'grok'; available: openai, "):
        providers.get("grok")


def test_duplicate_preset_is_a_problem_and_first_wins() -> None:
    providers = registry()
    original = providers.get("openai")
    impostor = ProviderPreset(
        name="openai", factory=original.factory, default_model="x", aliases=("claude",)
    )
    providers.register(impostor)
    providers.register(
        ProviderPreset(
            name="mine", factory=original.factory, default_model="y", aliases=("claude",)
        )
    )
    assert providers.get("openai") is original
    assert providers.get("claude").name == "anthropic"
    assert len(providers.problems) == 2
    assert "'openai' is registered twice" in providers.problems[0]
    assert "alias 'claude'" in providers.problems[1]


def test_model_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    section = {"openai": ProviderSettings(model="from-section")}
    agent = AgentSettings(provider="openai", model="from-agent")
    providers = registry()
    assert providers.build(Settings(agent=agent, providers=section)).model == "from-agent"
    assert providers.build(Settings(agent=agent, providers=section), model="cli").model == "cli"
    no_agent_model = Settings(agent=AgentSettings(provider="openai"), providers=section)
    assert providers.build(no_agent_model).model == "from-section"
    # [agent] model belongs to [agent] provider, not to another preset built by name.
    assert providers.build(Settings(agent=agent), "claude").model == "claude-3-5-haiku-latest"


def test_key_from_environment_and_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOGETHERAI_API_KEY", raising=False)
    monkeypatch.setenv("TOGETHER_API_KEY", "from-env")
    from_env = registry().build(Settings(agent=AgentSettings(provider="together")))
    assert isinstance(from_env, BackendProvider)
    assert from_env.settings.api_key == SecretStr("from-env")
    assert from_env.settings.base_url == "https://api.together.xyz/v1"
    section = ProviderSettings(api_key=SecretStr("from-config"))
    configured = Settings(agent=AgentSettings(provider="together"), providers={"together": section})
    from_config = registry().build(configured)
    assert isinstance(from_config, BackendProvider)
    assert from_config.settings.api_key == SecretStr("from-config")


def test_missing_key_explains_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ProviderError) as caught:
        registry().build(Settings(agent=AgentSettings(provider="claude")))
    error = caught.value
    assert error.kind == "config"
    message = str(error)
    assert len(message.splitlines()) == 3
    for part in (
        "openpista init",
        "ANTHROPIC_API_KEY",
        "Ollama",
        '[agent] provider = "ollama"',
    ):
        assert part in message


def test_ollama_needs_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = registry().build(Settings(agent=AgentSettings(provider="ollama")))
    assert (provider.name, provider.model) == ("ollama", "llama3.1")


def test_custom_requires_base_url() -> None:
    with pytest.raises(ProviderError) as caught:
        registry().build(Settings(agent=AgentSettings(provider="custom")))
    assert caught.value.kind == "config"
    assert "[providers.custom] base_url" in str(caught.value)


def test_importing_providers_does_not_import_litellm() -> None:
    code = textwrap.dedent(
        """
        import sys
        import openpista.providers.litellm_provider, openpista.providers.registry
        import openpista.providers.presets, openpista.builtins.providers
        assert "litellm" not in sys.modules, "litellm imported eagerly"
        assert "openai" not in sys.modules, "openai imported eagerly"
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- the shared contract suite ------------------------------------------------------------------


class TestOpenAIContract(ProviderContract):
    def make_provider(self, emulator: LlmEmulator, api_key: str) -> LlmProvider:
        return make(emulator, preset("openai", "http"), api_key=api_key)


class TestOpenAILiteLLMContract(ProviderContract):
    def make_provider(self, emulator: LlmEmulator, api_key: str) -> LlmProvider:
        return make(emulator, preset("openai", "litellm"), api_key=api_key)


class TestAnthropicContract(ProviderContract):
    def make_provider(self, emulator: LlmEmulator, api_key: str) -> LlmProvider:
        return make(emulator, preset("anthropic", "http"), api_key=api_key)


class TestAnthropicLiteLLMContract(ProviderContract):
    def make_provider(self, emulator: LlmEmulator, api_key: str) -> LlmProvider:
        return make(emulator, preset("anthropic", "litellm"), api_key=api_key)
