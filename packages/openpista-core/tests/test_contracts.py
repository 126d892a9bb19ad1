"""Core's own tools and channels pass the contract suites offered to plugin authors."""

from __future__ import annotations

import io
import os
from typing import ClassVar

from openpista.channels import Capabilities, ChannelAdapter
from openpista.config import SystemRunSettings
from openpista.gateway.cli_adapter import CliAdapter
from openpista.models import Answer, ApprovalPrompt
from openpista.tools.base import Tool
from openpista.tools.system_run import make_system_run_tool
from openpista_testing.adapters import LoopbackAdapter
from openpista_testing.contracts import ChannelContract, ToolContract


class TestSystemRunContract(ToolContract):
    valid_arguments: ClassVar = {"command": "echo contract"}
    invalid_arguments: ClassVar = {"command": 42, "timeout": "soon"}

    def make_tool(self) -> Tool:
        return make_system_run_tool(SystemRunSettings())


class TestLoopbackChannelContract(ChannelContract):
    async def make_adapter(self) -> ChannelAdapter:
        return LoopbackAdapter("contract:")

    async def deliver(self, adapter: ChannelAdapter, text: str) -> None:
        assert isinstance(adapter, LoopbackAdapter)
        await adapter.say("user", text)

    async def received(self, adapter: ChannelAdapter) -> list[str]:
        assert isinstance(adapter, LoopbackAdapter)
        return [
            m.text if isinstance(m, Answer) else m.request.prompt()
            for sent in adapter.sent.values()
            for m in sent
            if isinstance(m, Answer | ApprovalPrompt)
        ]


class TestLimitedLoopbackChannelContract(TestLoopbackChannelContract):
    """A channel holding 300 characters a message, counting each one twice."""

    async def make_adapter(self) -> ChannelAdapter:
        capabilities = Capabilities(max_message_length=300, measure=lambda text: 2 * len(text))
        return LoopbackAdapter("contract:", capabilities=capabilities)


class TestCliChannelContract(ChannelContract):
    """The terminal channel, fed through a real pipe as a shell would."""

    async def make_adapter(self) -> ChannelAdapter:
        self.read_fd, self.write_fd = os.pipe()
        self.stdout = io.StringIO()
        return CliAdapter(stdin=self.read_fd, stdout=self.stdout, stderr=io.StringIO())

    async def deliver(self, adapter: ChannelAdapter, text: str) -> None:
        os.write(self.write_fd, text.encode() + b"\n")

    async def received(self, adapter: ChannelAdapter) -> list[str]:
        return self.stdout.getvalue().splitlines()

    async def test_round_trip(self) -> None:
        try:
            await super().test_round_trip()
        finally:
            os.close(self.write_fd)
