"""Build tools from typed functions, and dispatch the LLM's tool calls to them.

The registry is the only place where a tool call meets a handler, so it is where every
failure is turned into an error result the LLM can read and act on: nothing a tool or the
LLM does can raise out of :meth:`ToolRegistry.dispatch`.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import typing
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from openpista.models import ToolCall, ToolResult
from openpista.naming import wire_name
from openpista.providers.base import ToolSpec
from openpista.tools.base import Tool, ToolError, ToolOutput

_SHOWN_RAW_CHARS = 200
_SHOWN_INPUT_CHARS = 80
# Schema keywords whose values are data, not schemas: a "title" key inside them is content.
_DATA_KEYWORDS = frozenset({"default", "examples", "const", "enum"})


def tool(
    name: str, description: str | None = None
) -> Callable[[Callable[..., Awaitable[str | ToolOutput]]], Tool]:
    """Turn a typed ``async def`` into a :class:`Tool` named ``name``.

    The JSON Schema of the arguments comes from the keyword parameters' type hints
    (describe one with ``Annotated[str, Field(description="...")]``); parameters with a
    default are optional. ``description`` defaults to the function's docstring. The tool's
    validator converts raw JSON arguments to the annotated types and raises ``ValueError``
    naming the offending argument and what was expected.

    Example::

        @tool("math.add")
        async def add(a: int, b: int = 1) -> str:
            \"\"\"Add two integers.\"\"\"
            return str(a + b)

    Return a :class:`~openpista.tools.base.ToolOutput` to hand back files as well.
    """

    def decorate(func: Callable[..., Awaitable[str | ToolOutput]]) -> Tool:
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"tool {name}: the handler must be an async function")
        text = description if description is not None else inspect.getdoc(func)
        if not text:
            raise TypeError(f"tool {name}: give a description or a docstring")
        model = _arguments_model(name, func)
        return Tool(
            name=name,
            description=text.strip(),
            handler=func,
            parameters=_clean_schema(model.model_json_schema()),
            validator=_make_validator(name, model),
        )

    return decorate


def _arguments_model(name: str, func: Callable[..., Any]) -> type[BaseModel]:
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except NameError as exc:
        raise TypeError(
            f"tool {name}: cannot evaluate the parameter annotations ({exc}); names they "
            "use must be module-level, or the module must not use "
            "`from __future__ import annotations`"
        ) from None
    fields: dict[str, Any] = {}
    for param in inspect.signature(func).parameters.values():
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            raise TypeError(
                f"tool {name}: parameter {param.name!r} must be passable by keyword "
                "(no *args, **kwargs or positional-only parameters)"
            )
        if param.name not in hints:
            raise TypeError(f"tool {name}: parameter {param.name!r} needs a type annotation")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints[param.name], default)
    model_name = "".join(part.title() for part in wire_name(name).split("_")) + "Arguments"
    # extra="forbid": an argument the tool does not know is a mistake worth telling the LLM.
    model: type[BaseModel] = create_model(
        model_name, __config__=ConfigDict(extra="forbid"), **fields
    )
    return model


def _clean_schema(schema: Any) -> Any:
    """Drop pydantic's generated ``title`` keys: noise in every prompt that carries the tool."""
    if isinstance(schema, list):
        return [_clean_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    cleaned: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        cleaned[key] = value if key in _DATA_KEYWORDS else _clean_schema(value)
    return cleaned


def _make_validator(
    name: str, model: type[BaseModel]
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    accepted = ", ".join(model.model_fields) or "none"

    def validate(arguments: dict[str, Any]) -> dict[str, Any]:
        try:
            parsed = model.model_validate(arguments)
        except ValidationError as exc:
            problems = [_describe_error(error, accepted) for error in exc.errors()]
            raise ValueError(f"invalid arguments for tool {name}: " + "; ".join(problems)) from None
        # Attributes, not model_dump(): handlers get the converted objects themselves.
        return {field: getattr(parsed, field) for field in model.model_fields}

    return validate


def _describe_error(error: Any, accepted: str) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "arguments"
    kind = error["type"]
    if kind == "missing":
        return f"missing required argument '{where}'"
    if kind == "extra_forbidden":
        return f"unexpected argument '{where}' (accepted: {accepted})"
    shown = _quote(error.get("input"), _SHOWN_INPUT_CHARS)
    return f"argument '{where}': {error['msg']} (got {shown})"


def _quote(value: object, limit: int) -> str:
    """``repr`` of ``value``, strings cut to ``limit`` characters with the rest counted."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r} ... ({len(value) - limit:,} more characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]} ..."


class ToolRegistry:
    """The tools offered to the LLM, by internal name, and the dispatcher of their calls.

    Tools may change while the agent runs (:meth:`update`): a turn offers the LLM the tools
    registered when it starts, and a call reaches the tool registered when it is made.
    """

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        # (by internal name, by wire name), replaced whole by update(): one read sees one
        # consistent pair. Writers take the lock.
        self._index: tuple[dict[str, Tool], dict[str, Tool]] = ({}, {})
        self._writing = threading.Lock()
        for item in tools:
            self.register(item)

    def register(self, tool: Tool) -> None:
        """Add ``tool``; raises ``ValueError`` when its name or wire name is already taken."""
        with self._writing:
            tools, by_wire = (dict(part) for part in self._index)
            _add(tools, by_wire, tool)
            self._index = (tools, by_wire)

    def update(self, remove: Iterable[str] = (), add: Iterable[Tool] = ()) -> list[str]:
        """Remove the tools named in ``remove`` (unknown names are ignored), then register
        ``add``, all in one step; return a problem line for each tool of ``add`` left out
        because its name or wire name is taken.

        For plugins whose tools change at run time (an MCP server's list changed). Safe from
        any thread: readers see the tools before or after the whole update, never a part.
        """
        gone = set(remove)
        problems: list[str] = []
        with self._writing:
            old_tools, old_wire = self._index
            tools = {name: item for name, item in old_tools.items() if name not in gone}
            by_wire = {wire: item for wire, item in old_wire.items() if item.name not in gone}
            for item in add:
                try:
                    _add(tools, by_wire, item)
                except ValueError as exc:
                    problems.append(str(exc))
            self._index = (tools, by_wire)
        return problems

    def get(self, name: str) -> Tool | None:
        """The tool with internal name ``name``, or ``None``."""
        return self._index[0].get(name)

    def _called(self, call: ToolCall) -> Tool | None:
        # A provider that forgot to map a wire name back still reaches the right tool.
        tools, by_wire = self._index
        return tools.get(call.name) or by_wire.get(call.name)

    def tools(self) -> list[Tool]:
        """All tools, in registration order."""
        return list(self._index[0].values())

    def names(self) -> list[str]:
        """Internal names of all tools, in registration order."""
        return list(self._index[0])

    def __len__(self) -> int:
        return len(self._index[0])

    def __contains__(self, name: object) -> bool:
        return name in self._index[0]

    def specs(self) -> list[ToolSpec]:
        """The tools as offered to a provider (internal names)."""
        return [
            ToolSpec(name=item.name, description=item.description, parameters=item.parameters)
            for item in self._index[0].values()
        ]

    async def dispatch(self, call: ToolCall) -> ToolResult:
        """Run one call and return its result; every failure becomes an error result.

        Only cancellation propagates (``asyncio.CancelledError``).
        """
        found = self._called(call)
        if found is None:
            available = ", ".join(self._index[1]) or "none"  # the names the LLM knows
            return _error(call, f"unknown tool '{call.name}'; available tools: {available}")
        arguments = call.arguments
        if call.raw_arguments is not None and call.raw_arguments.strip():
            return _error(
                call,
                f"the arguments of tool {found.name} are not a JSON object: "
                f"{_quote(call.raw_arguments, _SHOWN_RAW_CHARS)}\n"
                "Call it again with the arguments as one JSON object, "
                'for example {"name": "value"}.',
            )
        if found.validator is not None:
            try:
                arguments = found.validator(arguments)
            except ValueError as exc:
                return _error(call, str(exc))
            except Exception as exc:
                return _error(call, f"tool {found.name} failed: {type(exc).__name__}: {exc}")
        try:
            output: object = await found.handler(**arguments)
        except ToolError as exc:
            return _error(call, str(exc) or f"tool {found.name} failed")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return _error(call, f"tool {found.name} failed: {type(exc).__name__}: {exc}")
        if isinstance(output, ToolOutput):
            return ToolResult(
                call_id=call.id, name=call.name, output=output.text, attachments=output.attachments
            )
        # Third-party handlers are not type-checked; keep the contract of text out.
        text = output if isinstance(output, str) else str(output)
        return ToolResult(call_id=call.id, name=call.name, output=text)

    async def approval_warnings(self, call: ToolCall) -> list[str]:
        """What an approval request for ``call`` must warn about: its tool's
        :attr:`~openpista.tools.base.Tool.approval_warning`, if any. A check that fails is
        itself a warning (the user decides without the tool's word)."""
        found = self._called(call)
        if found is None or found.approval_warning is None:
            return []
        try:
            warning = await found.approval_warning(call.arguments)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return [f"{found.name} could not check how it would run: {type(exc).__name__}: {exc}"]
        return [warning] if warning else []

    async def dispatch_many(self, calls: Iterable[ToolCall]) -> list[ToolResult]:
        """Run ``calls`` concurrently; the results come back in the order of the calls."""
        return list(await asyncio.gather(*(self.dispatch(call) for call in calls)))


def _add(tools: dict[str, Tool], by_wire: dict[str, Tool], tool: Tool) -> None:
    if tool.name in tools:
        raise ValueError(f"tool {tool.name} is already registered")
    wire = wire_name(tool.name)
    other = by_wire.get(wire)
    if other is not None:
        raise ValueError(
            f"tool {tool.name} collides with tool {other.name}: both are called {wire} on the wire"
        )
    tools[tool.name] = tool
    by_wire[wire] = tool


def _error(call: ToolCall, message: str) -> ToolResult:
    return ToolResult(call_id=call.id, name=call.name, output=message, is_error=True)
