"""Contract test suites that plugin packages subclass.

Each class holds pytest tests that any conforming tool, provider or channel adapter must
pass. Subclass it in your own test module, fill in the ``make_*`` methods (and the few
attributes documented on each class), and pytest collects the inherited tests::

    from openpista_testing.contracts import ToolContract

    class TestGreetTool(ToolContract):
        valid_arguments = {"name": "Ada"}

        def make_tool(self):
            return greet_tool
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from openpista.channels import Capabilities, ChannelAdapter
from openpista.models import Answer, ApprovalPrompt, ApprovalRequest, Message, ToolCall
from openpista.naming import WIRE_NAME_MAX, wire_name
from openpista.providers.base import ChatResult, LlmProvider, ProviderError, TextDelta, ToolSpec
from openpista_testing.adapters import QueueContext

if TYPE_CHECKING:
    from openpista.tools.base import Tool
    from openpista_testing.emulator import LlmEmulator


class ToolContract:
    """Every tool: a wire-safe name, a description, an object schema, errors as results.

    Set ``valid_arguments`` (arguments that make the tool succeed) and, if the tool has
    required or typed arguments, ``invalid_arguments`` (arguments it must refuse).
    """

    valid_arguments: ClassVar[dict[str, Any]] = {}
    invalid_arguments: ClassVar[dict[str, Any] | None] = None

    def make_tool(self) -> Tool:
        """Return the tool under test."""
        raise NotImplementedError

    def test_name_is_wire_safe(self) -> None:
        name = self.make_tool().name
        assert name, "a tool needs a name"
        assert len(wire_name(name)) <= WIRE_NAME_MAX
        assert wire_name(name) == name.replace(".", "_"), f"{name!r} has characters LLM APIs refuse"

    def test_has_description(self) -> None:
        assert self.make_tool().description.strip(), "the LLM picks tools by their description"

    def test_parameters_are_an_object_schema(self) -> None:
        schema = self.make_tool().parameters
        assert schema.get("type") == "object"
        assert isinstance(schema.get("properties", {}), dict)

    async def test_valid_arguments_succeed(self) -> None:
        result = await self._dispatch(self.valid_arguments)
        assert not result.is_error, result.output
        assert isinstance(result.output, str)

    async def test_invalid_arguments_are_an_error_result(self) -> None:
        if self.invalid_arguments is None:
            return
        result = await self._dispatch(self.invalid_arguments)
        assert result.is_error
        assert result.output.strip()

    async def _dispatch(self, arguments: dict[str, Any]) -> Any:
        from openpista.tools.registry import ToolRegistry

        tool = self.make_tool()
        registry = ToolRegistry()
        registry.register(tool)
        return await registry.dispatch(ToolCall(id="contract", name=tool.name, arguments=arguments))


class ProviderContract:
    """Every LLM provider, driven against the LLM emulator (the ``llm_emulator`` fixture).

    Implement ``make_provider(emulator, api_key)`` returning a provider that talks to the
    emulator's wire format; the emulator checks ``api_key``.
    """

    def make_provider(self, emulator: LlmEmulator, api_key: str) -> LlmProvider:
        """Return a provider pointed at ``emulator``, authenticating with ``api_key``."""
        raise NotImplementedError

    async def test_streams_text_then_one_result(self, llm_emulator: LlmEmulator) -> None:
        llm_emulator.reply_text("Hello from the contract")
        provider = self.make_provider(llm_emulator, llm_emulator.api_key or "test-key")
        events = [e async for e in provider.stream([Message(role="user", content="hi")], [])]
        assert isinstance(events[-1], ChatResult)
        assert sum(isinstance(e, ChatResult) for e in events) == 1
        streamed = "".join(e.text for e in events if isinstance(e, TextDelta))
        assert streamed == events[-1].text == "Hello from the contract"

    async def test_tool_calls_use_internal_names(self, llm_emulator: LlmEmulator) -> None:
        llm_emulator.reply_tool_calls([("contract_echo", {"text": "ping"})])
        provider = self.make_provider(llm_emulator, llm_emulator.api_key or "test-key")
        spec = ToolSpec(
            name="contract.echo",
            description="Echo text back.",
            parameters={"type": "object", "properties": {"text": {"type": "string"}}},
        )
        result = await provider.complete([Message(role="user", content="echo ping")], [spec])
        assert [(c.name, c.arguments) for c in result.tool_calls] == [
            ("contract.echo", {"text": "ping"})
        ]

    async def test_rejected_key_is_a_provider_error(self, llm_emulator: LlmEmulator) -> None:
        llm_emulator.reply_error(401, "invalid api key")
        provider = self.make_provider(llm_emulator, "wrong-key")
        with pytest.raises(ProviderError) as failure:
            await provider.complete([Message(role="user", content="hi")], [])
        assert failure.value.kind == "auth"
        assert "wrong-key" not in str(failure.value), "never show the key"


class ChannelContract:
    """Every channel adapter: native message in -> ChannelEvent; answers and approval
    prompts -> native out.

    Implement ``make_adapter()``, ``deliver(adapter, text)`` (send ``text`` to the adapter
    through its native protocol, as a user would) and ``received(adapter)`` (what the user
    has been shown so far, as a list of texts). The adapter is started with a
    :class:`~openpista_testing.adapters.QueueContext`.
    """

    timeout: ClassVar[float] = 10.0

    async def make_adapter(self) -> ChannelAdapter:
        """Return a configured, not yet started adapter."""
        raise NotImplementedError

    async def deliver(self, adapter: ChannelAdapter, text: str) -> None:
        """Send ``text`` to the adapter the way a user of this messenger would."""
        raise NotImplementedError

    async def received(self, adapter: ChannelAdapter) -> list[str]:
        """Texts the user has been shown so far."""
        raise NotImplementedError

    async def test_declares_the_contract(self) -> None:
        adapter = await self.make_adapter()
        assert isinstance(adapter, ChannelAdapter), "subclass openpista.channels.ChannelAdapter"
        assert adapter.name
        assert adapter.channel_prefix.endswith(":")
        assert isinstance(adapter.capabilities, Capabilities)

    async def test_round_trip(self) -> None:
        adapter = await self.make_adapter()
        ctx = QueueContext()
        await adapter.start(ctx)
        try:
            await self.deliver(adapter, "contract ping")
            event = await asyncio.wait_for(ctx.events.get(), self.timeout)
            assert event.text == "contract ping"
            assert event.channel_id.startswith(adapter.channel_prefix)
            await adapter.send(Answer(channel_id=event.channel_id, text="contract pong"))
            await self._shown(adapter, "contract pong")
            request = ApprovalRequest(id="contract1", tool="contract.tool")
            await adapter.send(ApprovalPrompt(channel_id=event.channel_id, request=request))
            await self._shown(adapter, "contract1")
        finally:
            await adapter.stop()

    async def test_a_long_answer_arrives_within_the_limit(self) -> None:
        """With ``max_message_length``, what the gateway sends of a long answer (Markdown,
        a code block, escapes, characters outside the BMP) fits ``measure`` and is shown."""
        adapter = await self.make_adapter()
        capabilities = adapter.capabilities
        limit = capabilities.max_message_length
        if limit is None:
            return  # the channel holds any length: nothing is cut
        ctx = QueueContext()
        await adapter.start(ctx)
        try:
            await self.deliver(adapter, "contract long")
            event = await asyncio.wait_for(ctx.events.get(), self.timeout)
            paragraph = "Contract **words** 🙂 a<b & c. " * 8
            count = 3 * limit // capabilities.measure(paragraph) + 1
            code = "\n".join(f"step({n})" for n in range(limit // 20 + 1))
            text = "\n\n".join([paragraph] * count) + f"\n\n```python\n{code}\n```\ncontract end"
            parts = capabilities.split(Answer(channel_id=event.channel_id, text=text))
            assert len(parts) > 3
            for part in parts:
                assert isinstance(part, Answer)
                assert 0 < capabilities.measure(part.text) <= limit
                await adapter.send(part)
            await self._shown(adapter, "contract end")
            assert all(len(shown) <= limit for shown in await self.received(adapter))
        finally:
            await adapter.stop()

    async def _shown(self, adapter: ChannelAdapter, text: str) -> None:
        for _ in range(int(self.timeout / 0.05)):
            if any(text in shown for shown in await self.received(adapter)):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{text!r} never reached the user")
