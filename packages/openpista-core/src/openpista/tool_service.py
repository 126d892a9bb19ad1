"""openpista's tools for callers outside the agent (an MCP client), with the policy applied.

:func:`open_tool_service` opens a runtime for a configuration (plugins, their tools,
memory) and hands out a :class:`ToolService`: the tools the ``[policy]`` does not deny to
``channel_id``, and one call at a time decided by it. Nobody can be asked for an approval
here, so a call the policy would ask about is refused with a line saying how to allow it::

    async with open_tool_service(settings, "mcp:stdio") as service:
        for tool in service.tools():
            ...
        result = await service.call("system.run", {"command": "ls"})
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from openpista.models import ToolCall, ToolResult
from openpista.policy import COMMAND_TOOL, ToolPolicy
from openpista.tools.context import TurnContext, reset_turn, set_turn

if TYPE_CHECKING:
    from openpista.config import PolicySettings, Settings
    from openpista.tools.base import Tool
    from openpista.tools.registry import ToolRegistry


class ToolService:
    """The tools of one runtime as ``channel_id`` may use them (see the module docs)."""

    def __init__(self, tools: ToolRegistry, policy: PolicySettings, channel_id: str) -> None:
        self._tools = tools
        self._settings = policy
        self._policy = ToolPolicy(policy)
        self.channel_id = channel_id

    def tools(self) -> list[Tool]:
        """The tools offered: all but those the policy denies to this channel whatever the
        arguments (``system.run`` stays while an allow or ask rule names a command), and
        those that work only in a conversation (:attr:`Tool.conversation_only`)."""
        return [tool for tool in self._tools.tools() if not self._denied(tool.name)]

    def _denied(self, name: str) -> bool:
        found = self._tools.get(name)
        if found is None or found.conversation_only:
            return True
        if self._policy.decide(name, {}, self.channel_id).action != "deny":
            return False
        return name != COMMAND_TOOL or not any(
            rule.command is not None and rule.action != "deny" for rule in self._settings.rules
        )

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        """Run tool ``name`` if the policy allows it; every refusal or failure is an error
        result (as :meth:`ToolRegistry.dispatch`). Only cancellation propagates."""
        call = ToolCall(id=f"call-{uuid.uuid4().hex[:12]}", name=name, arguments=arguments)
        if self._denied(name):
            shown = ", ".join(tool.name for tool in self.tools()) or "none"
            return _refused(call, f"unknown tool '{name}'; available tools: {shown}")
        decision = self._policy.decide(name, arguments, self.channel_id)
        if decision.action == "deny":
            return _refused(call, f"the tool policy denies this call ({decision.reason})")
        if decision.action == "ask":
            return _refused(
                call,
                f"the tool policy asks before this call runs ({decision.reason}), and nobody "
                f"can approve it here; allow it for {self.channel_id} with a [[policy.rules]] "
                f'entry: {{ tool = "{name}", channels = ["{self.channel_id}"], '
                'action = "allow" }',
            )
        token = set_turn(TurnContext(self.channel_id, self.channel_id))
        try:
            return await self._tools.dispatch(call)
        finally:
            reset_turn(token)


def _refused(call: ToolCall, message: str) -> ToolResult:
    return ToolResult(call_id=call.id, name=call.name, output=message, is_error=True)


@contextlib.asynccontextmanager
async def open_tool_service(settings: Settings, channel_id: str) -> AsyncIterator[ToolService]:
    """Open a runtime for ``settings`` (closed on exit) and serve its tools to
    ``channel_id`` (``policy.remote`` applies to it unless it starts with a local prefix)."""
    from openpista.runtime import Runtime

    async with await Runtime.open(settings) as runtime:
        yield ToolService(runtime.toolbox.tools, runtime.settings.policy, channel_id)
