"""openpista: an autonomous AI agent you reach through the messengers you already use.

What plugin authors need is importable from here. Names are resolved lazily, so
``import openpista`` stays cheap no matter what the plugin uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from openpista._version import __version__
from openpista.hookspecs import hookimpl

if TYPE_CHECKING:
    from openpista.channels import ChannelAdapter
    from openpista.models import (
        AgentResponse,
        Attachment,
        ChannelEvent,
        Message,
        ToolCall,
        ToolResult,
        Usage,
    )
    from openpista.providers.base import LlmProvider, ProviderError, ProviderPreset, ToolSpec
    from openpista.skills.base import Skill, SkillRunner
    from openpista.tools.base import Tool, ToolError
    from openpista.tools.registry import tool

_LAZY = {
    "ChannelAdapter": "openpista.channels",
    "AgentResponse": "openpista.models",
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
    "Skill": "openpista.skills.base",
    "SkillRunner": "openpista.skills.base",
    "Tool": "openpista.tools.base",
    "ToolError": "openpista.tools.base",
    "tool": "openpista.tools.registry",
}

__all__ = [  # noqa: RUF022 (grouped like _LAZY)
    "__version__",
    "hookimpl",
    "ChannelAdapter",
    "AgentResponse",
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
    "Skill",
    "SkillRunner",
    "Tool",
    "ToolError",
    "tool",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'openpista' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
