"""The tool decorator (schema, validation) and the registry (collisions, dispatch)."""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated, Literal

import pytest
from pydantic import Field

from openpista.models import ToolCall
from openpista.tools.base import Tool, ToolError
from openpista.tools.registry import ToolRegistry, tool


@tool("math.add")
async def add(
    a: Annotated[int, Field(description="First addend.")],
    b: Annotated[int, Field(description="Second addend.", ge=0)] = 1,
) -> str:
    """Add two integers."""
    return str(a + b)


@tool("text.shout", description="Upper-case a text.")
async def shout(text: str, style: Literal["plain", "bang"] = "plain") -> str:
    return text.upper() + ("!" if style == "bang" else "")


@tool("fail.tool_error")
async def fails_cleanly() -> str:
    """Always fails the way a tool should."""
    raise ToolError("the disk is full")


@tool("fail.crash")
async def crashes(n: int = 0) -> str:
    """Always fails the way a tool should not."""
    raise KeyError(f"missing {n}")


def call(name: str, **arguments: object) -> ToolCall:
    return ToolCall(id=f"id-{name}", name=name, arguments=arguments)


@pytest.fixture
def registry() -> ToolRegistry:
    return ToolRegistry([add, shout, fails_cleanly, crashes])


# --- the decorator -------------------------------------------------------------------------


def test_schema_from_type_hints() -> None:
    assert add.name == "math.add"
    assert add.description == "Add two integers."
    assert add.parameters == {
        "type": "object",
        "properties": {
            "a": {"type": "integer", "description": "First addend."},
            "b": {"type": "integer", "description": "Second addend.", "minimum": 0, "default": 1},
        },
        "required": ["a"],
        "additionalProperties": False,
    }


def test_explicit_description_and_enum() -> None:
    assert shout.description == "Upper-case a text."
    assert shout.parameters["properties"]["style"]["enum"] == ["plain", "bang"]
    assert shout.parameters["required"] == ["text"]


def test_a_property_named_title_survives_title_cleanup() -> None:
    @tool("doc.write")
    async def write(title: str, body: str = "") -> str:
        """Write a document."""
        return title + body

    assert set(write.parameters["properties"]) == {"title", "body"}
    assert "title" not in write.parameters["properties"]["title"]


def test_validator_converts_and_fills_defaults() -> None:
    assert add.validator is not None
    assert add.validator({"a": "2"}) == {"a": 2, "b": 1}


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({}, "missing required argument 'a'"),
        ({"a": "two"}, "argument 'a': Input should be a valid integer"),
        ({"a": 1, "b": -1}, "argument 'b': Input should be greater than or equal to 0"),
        ({"a": 1, "c": 3}, "unexpected argument 'c' (accepted: a, b)"),
    ],
)
def test_validation_messages_name_argument_and_expectation(
    arguments: dict[str, object], expected: str
) -> None:
    assert add.validator is not None
    with pytest.raises(ValueError, match=r"invalid arguments for tool math\.add") as caught:
        add.validator(arguments)
    assert expected in str(caught.value)


def test_decorator_rejects_what_it_cannot_describe() -> None:
    with pytest.raises(TypeError, match="async"):
        tool("x.sync", description="d")(lambda: "x")  # type: ignore[arg-type,return-value]

    async def undocumented(a: int) -> str:
        return str(a)

    with pytest.raises(TypeError, match="description or a docstring"):
        tool("x.nodoc")(undocumented)

    async def untyped(a) -> str:  # type: ignore[no-untyped-def]
        return str(a)

    with pytest.raises(TypeError, match="'a' needs a type annotation"):
        tool("x.untyped", description="d")(untyped)

    async def star(*args: int) -> str:
        return ""

    with pytest.raises(TypeError, match="passable by keyword"):
        tool("x.star", description="d")(star)


# --- registration --------------------------------------------------------------------------


def test_register_get_names_specs(registry: ToolRegistry) -> None:
    assert registry.names() == ["math.add", "text.shout", "fail.tool_error", "fail.crash"]
    assert registry.get("math.add") is add
    assert registry.get("nope") is None
    specs = registry.specs()
    assert [spec.name for spec in specs] == registry.names()
    assert specs[0].description == "Add two integers."
    assert specs[0].parameters == add.parameters


def test_duplicate_name_is_rejected(registry: ToolRegistry) -> None:
    with pytest.raises(ValueError, match=r"tool math\.add is already registered"):
        registry.register(add)


def test_wire_name_collision_names_both_tools(registry: ToolRegistry) -> None:
    twin = Tool(name="math_add", description="Same wire name.", handler=add.handler)
    with pytest.raises(ValueError, match=r"math_add collides with tool math\.add") as caught:
        registry.register(twin)
    assert "math_add on the wire" in str(caught.value)
    assert registry.get("math_add") is None


async def test_update_removes_and_adds_in_one_step(registry: ToolRegistry) -> None:
    fresh = Tool(name="text.fresh", description="Added at run time.", handler=add.handler)
    assert registry.update(remove=["math.add", "not.there"], add=[fresh]) == []

    assert registry.names() == ["text.shout", "fail.tool_error", "fail.crash", "text.fresh"]
    gone = await registry.dispatch(call("math_add", a=1))
    assert gone.is_error
    assert gone.output.startswith("unknown tool 'math_add'")
    assert (await registry.dispatch(call("text_fresh", a=1, b=2))).output == "3"


def test_update_leaves_out_colliding_tools_and_keeps_the_rest(registry: ToolRegistry) -> None:
    twin = Tool(name="text_shout", description="Same wire name.", handler=add.handler)
    fresh = Tool(name="text.fresh", description="Fine.", handler=add.handler)
    problems = registry.update(add=[twin, shout, fresh])

    assert problems == [
        "tool text_shout collides with tool text.shout: both are called text_shout on the wire",
        "tool text.shout is already registered",
    ]
    assert registry.names()[-1] == "text.fresh"
    assert registry.get("text.shout") is shout
    # A name freed by the same update may be taken again by it (a changed schema).
    changed = Tool(name="text.shout", description="New schema.", handler=shout.handler)
    assert registry.update(remove=["text.shout"], add=[changed]) == []
    assert registry.get("text.shout") is changed


def test_updates_from_several_threads_are_none_of_them_lost() -> None:
    registry = ToolRegistry()

    def add_many(prefix: str) -> None:
        for index in range(300):
            item = Tool(name=f"{prefix}.t{index}", description="d", handler=add.handler)
            assert registry.update(add=[item]) == []
            assert registry.get(item.name) is item

    threads = [threading.Thread(target=add_many, args=(p,)) for p in ("one", "two", "three")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(registry) == 900
    assert len(registry.specs()) == 900


# --- dispatch ------------------------------------------------------------------------------


async def test_dispatch_success(registry: ToolRegistry) -> None:
    result = await registry.dispatch(call("math.add", a=2, b=3))
    assert (result.call_id, result.name, result.output, result.is_error) == (
        "id-math.add",
        "math.add",
        "5",
        False,
    )


async def test_dispatch_accepts_the_wire_name(registry: ToolRegistry) -> None:
    result = await registry.dispatch(call("math_add", a=2))
    assert result.output == "3"
    assert not result.is_error


async def test_unknown_tool_lists_available_tools_by_their_wire_names(
    registry: ToolRegistry,
) -> None:
    result = await registry.dispatch(call("math.mul", a=1))
    assert result.is_error
    assert "unknown tool 'math.mul'" in result.output
    # The LLM only ever saw the wire names: those are the ones it can call again.
    assert "available tools: math_add, text_shout, fail_tool_error, fail_crash" in result.output
    assert "math.add" not in result.output


async def test_raw_non_json_arguments_are_quoted_and_truncated(registry: ToolRegistry) -> None:
    sent = "a=1, b=2 " + "x" * 500
    result = await registry.dispatch(ToolCall(id="r", name="math.add", raw_arguments=sent))
    assert result.is_error
    assert "not a JSON object" in result.output
    assert "'a=1, b=2 xxx" in result.output
    assert "(309 more characters)" in result.output
    assert "JSON object" in result.output.splitlines()[-1]


async def test_invalid_arguments_give_the_validator_message(registry: ToolRegistry) -> None:
    result = await registry.dispatch(call("math.add", a="many"))
    assert result.is_error
    assert result.output.startswith("invalid arguments for tool math.add: argument 'a'")


async def test_tool_error_becomes_its_message(registry: ToolRegistry) -> None:
    result = await registry.dispatch(call("fail.tool_error"))
    assert result.is_error
    assert result.output == "the disk is full"


async def test_unexpected_exception_is_named(registry: ToolRegistry) -> None:
    result = await registry.dispatch(call("fail.crash", n=7))
    assert result.is_error
    assert result.output == "tool fail.crash failed: KeyError: 'missing 7'"


async def test_cancellation_propagates(registry: ToolRegistry) -> None:
    started = asyncio.Event()

    @tool("wait.forever")
    async def forever() -> str:
        """Never returns."""
        started.set()
        await asyncio.Event().wait()
        return ""

    registry.register(forever)
    task = asyncio.create_task(registry.dispatch(call("wait.forever")))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_dispatch_many_is_concurrent_and_ordered(registry: ToolRegistry) -> None:
    # Each tool can only finish after the other one has started: sequential dispatch would
    # deadlock, so completing at all proves the calls ran concurrently.
    ping_seen, pong_seen = asyncio.Event(), asyncio.Event()

    @tool("sync.ping")
    async def ping() -> str:
        """Half of a handshake."""
        ping_seen.set()
        await pong_seen.wait()
        return "ping done"

    @tool("sync.pong")
    async def pong() -> str:
        """The other half."""
        pong_seen.set()
        await ping_seen.wait()
        return "pong done"

    registry.register(ping)
    registry.register(pong)
    calls = [call("sync.ping"), call("math.add", a=1), call("sync.pong"), call("nope")]
    results = await asyncio.wait_for(registry.dispatch_many(calls), timeout=30)
    assert [r.call_id for r in results] == [c.id for c in calls]
    assert [r.output for r in results[:3]] == ["ping done", "2", "pong done"]
    assert results[3].is_error
