"""Tools the LLM can call: the contract, the registry and the built-in shell tool.

The public API for tool plugins is importable from here (lazily, so importing
:mod:`openpista.tools.base` stays cheap):

- the contract: :class:`Tool`, :class:`ToolError`, :class:`ToolOutput`, the :func:`tool`
  decorator, and :func:`current_turn` (the session and chat of the running call);
- running programs: :func:`run_process` (bounded output, scrubbed environment, the whole
  process group killed on timeout or cancel, even when openpista dies) returning a
  :class:`ProcessResult` of two :class:`CapturedText`; :class:`StreamCapture` to bound a
  stream you read yourself; :func:`tool_environment` for the environment a program gets;
  :func:`format_result`, the text ``system.run`` gives the LLM for a result;
- tools described by data: :func:`object_schema` checks an arguments schema,
  :func:`schema_validator` makes a tool's validator from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openpista._lazy import lazy_exports

if TYPE_CHECKING:
    from openpista.tools.base import Tool, ToolError, ToolOutput
    from openpista.tools.context import TurnContext, current_turn
    from openpista.tools.process import (
        CapturedText,
        ProcessResult,
        StreamCapture,
        run_process,
        tool_environment,
    )
    from openpista.tools.registry import tool
    from openpista.tools.schema import object_schema, schema_validator
    from openpista.tools.system_run import format_result

_EXPORTS = {
    "Tool": "openpista.tools.base",
    "ToolError": "openpista.tools.base",
    "ToolOutput": "openpista.tools.base",
    "tool": "openpista.tools.registry",
    "TurnContext": "openpista.tools.context",
    "current_turn": "openpista.tools.context",
    "CapturedText": "openpista.tools.process",
    "ProcessResult": "openpista.tools.process",
    "StreamCapture": "openpista.tools.process",
    "run_process": "openpista.tools.process",
    "tool_environment": "openpista.tools.process",
    "format_result": "openpista.tools.system_run",
    "object_schema": "openpista.tools.schema",
    "schema_validator": "openpista.tools.schema",
}
__all__ = [
    "CapturedText",
    "ProcessResult",
    "StreamCapture",
    "Tool",
    "ToolError",
    "ToolOutput",
    "TurnContext",
    "current_turn",
    "format_result",
    "object_schema",
    "run_process",
    "schema_validator",
    "tool",
    "tool_environment",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)
