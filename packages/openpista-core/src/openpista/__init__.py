"""openpista: an autonomous AI agent you reach through the messengers you already use.

What plugin authors need is importable from here (docs/plugins.md lists it). Names are
resolved lazily, so ``import openpista`` stays cheap no matter what the plugin uses. The
topic modules behind them are public too: :mod:`openpista.tools` (the tool contract,
process capture), :mod:`openpista.skills` (skill runners), :mod:`openpista.serving`
(embedded servers and listeners), :mod:`openpista.cli` (helpers for plugin commands).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from openpista._lazy import lazy_exports
from openpista._version import __version__

# httpx imports its command-line client (rich and pygments, ~30 ms of every start) when they
# are installed; no openpista process runs it, so httpx takes its fallback ``main`` instead.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

if TYPE_CHECKING:
    from openpista.channels import (
        Capabilities,
        ChannelAdapter,
        ChannelContext,
        ChatCommand,
        CommandCall,
        CommandReply,
        GatewayClosedError,
    )
    from openpista.config import ConfigError, Settings, home_dir
    from openpista.files import write_private
    from openpista.hookspecs import hookimpl  # pluggy: loaded with the first plugin
    from openpista.models import (
        ERROR_PREFIX,
        Answer,
        ApprovalPrompt,
        ApprovalRequest,
        Attachment,
        ChannelEvent,
        Message,
        Outbound,
        TextChunk,
        ToolCall,
        ToolProgress,
        ToolResult,
        Usage,
        error_text,
        parse_outbound,
    )
    from openpista.observability.logs import redacting_filter
    from openpista.plugin_context import DaemonServices, PluginContext
    from openpista.plugin_settings import HttpRoot, PluginSettings
    from openpista.providers.base import LlmProvider, ProviderError, ProviderPreset, ToolSpec
    from openpista.serving import EmbeddedServer, WebhookPath, bind_tcp, bind_unix
    from openpista.skills import MAX_ARGV_JSON_BYTES, Skill, SkillRunner, skill_output
    from openpista.text import split_message
    from openpista.tools import (
        CapturedText,
        ProcessResult,
        StreamCapture,
        Tool,
        ToolError,
        ToolOutput,
        TurnContext,
        current_turn,
        format_result,
        run_process,
        tool,
        tool_environment,
    )

_EXPORTS = {
    "hookimpl": "openpista.hookspecs",
    "PluginContext": "openpista.plugin_context",
    "DaemonServices": "openpista.plugin_context",
    "PluginSettings": "openpista.plugin_settings",
    "HttpRoot": "openpista.plugin_settings",
    "ConfigError": "openpista.config",
    "Settings": "openpista.config",
    "home_dir": "openpista.config",
    "write_private": "openpista.files",
    "redacting_filter": "openpista.observability.logs",
    "ChannelAdapter": "openpista.channels",
    "ChannelContext": "openpista.channels",
    "Capabilities": "openpista.channels",
    "ChatCommand": "openpista.channels",
    "CommandCall": "openpista.channels",
    "CommandReply": "openpista.channels",
    "GatewayClosedError": "openpista.channels",
    "Answer": "openpista.models",
    "TextChunk": "openpista.models",
    "ToolProgress": "openpista.models",
    "ApprovalPrompt": "openpista.models",
    "ApprovalRequest": "openpista.models",
    "Outbound": "openpista.models",
    "parse_outbound": "openpista.models",
    "ERROR_PREFIX": "openpista.models",
    "error_text": "openpista.models",
    "Attachment": "openpista.models",
    "ChannelEvent": "openpista.models",
    "Message": "openpista.models",
    "ToolCall": "openpista.models",
    "ToolResult": "openpista.models",
    "Usage": "openpista.models",
    "LlmProvider": "openpista.providers.base",
    "ProviderError": "openpista.providers.base",
    "ProviderPreset": "openpista.providers.base",
    "ToolSpec": "openpista.providers.base",
    "EmbeddedServer": "openpista.serving",
    "WebhookPath": "openpista.serving",
    "bind_tcp": "openpista.serving",
    "bind_unix": "openpista.serving",
    "Skill": "openpista.skills",
    "SkillRunner": "openpista.skills",
    "MAX_ARGV_JSON_BYTES": "openpista.skills",
    "skill_output": "openpista.skills",
    "split_message": "openpista.text",
    "Tool": "openpista.tools",
    "ToolError": "openpista.tools",
    "ToolOutput": "openpista.tools",
    "tool": "openpista.tools",
    "TurnContext": "openpista.tools",
    "current_turn": "openpista.tools",
    "CapturedText": "openpista.tools",
    "ProcessResult": "openpista.tools",
    "StreamCapture": "openpista.tools",
    "run_process": "openpista.tools",
    "tool_environment": "openpista.tools",
    "format_result": "openpista.tools",
}

__all__ = [  # noqa: RUF022 (grouped like _EXPORTS)
    "__version__",
    "hookimpl",
    "PluginContext",
    "DaemonServices",
    "PluginSettings",
    "HttpRoot",
    "ConfigError",
    "Settings",
    "home_dir",
    "write_private",
    "redacting_filter",
    "ChannelAdapter",
    "ChannelContext",
    "Capabilities",
    "ChatCommand",
    "CommandCall",
    "CommandReply",
    "GatewayClosedError",
    "Answer",
    "TextChunk",
    "ToolProgress",
    "ApprovalPrompt",
    "ApprovalRequest",
    "Outbound",
    "parse_outbound",
    "ERROR_PREFIX",
    "error_text",
    "Attachment",
    "ChannelEvent",
    "Message",
    "ToolCall",
    "ToolResult",
    "Usage",
    "LlmProvider",
    "ProviderError",
    "ProviderPreset",
    "ToolSpec",
    "EmbeddedServer",
    "WebhookPath",
    "bind_tcp",
    "bind_unix",
    "Skill",
    "SkillRunner",
    "MAX_ARGV_JSON_BYTES",
    "skill_output",
    "split_message",
    "Tool",
    "ToolError",
    "ToolOutput",
    "tool",
    "TurnContext",
    "current_turn",
    "CapturedText",
    "ProcessResult",
    "StreamCapture",
    "run_process",
    "tool_environment",
    "format_result",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
