"""``system.run`` and the process helper under it, with real bash and real processes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from openpista.config import Settings, SystemRunSettings
from openpista.models import ToolCall, ToolResult
from openpista.tools.base import Tool, ToolError
from openpista.tools.process import CapturedText, run_process
from openpista.tools.registry import ToolRegistry
from openpista.tools.system_run import make_system_run_tool
from openpista_testing.processes import is_running, read_pids


async def wait_for_pids(path: Path, count: int) -> list[int]:
    """PIDs a command wrote to ``path``, once it wrote ``count`` of them."""
    # A file written by another process cannot be awaited: poll it.
    while len(pids := read_pids(path)) < count:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    return pids


async def run(command: str, **settings: object) -> ToolResult:
    """Dispatch ``system.run`` through a registry, as the agent does."""
    return await run_call({"command": command}, **settings)


async def run_call(arguments: dict[str, object], **settings: object) -> ToolResult:
    tool = make_system_run_tool(SystemRunSettings.model_validate(settings))
    registry = ToolRegistry([tool])
    return await registry.dispatch(ToolCall(id="c1", name="system.run", arguments=arguments))


@pytest.fixture
def system_run() -> Tool:
    return make_system_run_tool(SystemRunSettings())


async def test_stdout_stderr_and_exit_code() -> None:
    result = await run("echo out; echo err >&2")
    assert not result.is_error
    assert result.output == "exit code: 0\n--- stdout ---\nout\n--- stderr ---\nerr"


async def test_non_zero_exit_is_an_error_result_that_keeps_the_output() -> None:
    result = await run("echo partial; echo nope >&2; exit 3")
    assert result.is_error  # shown as a failure (✗), not as ✓
    assert result.output == "exit code: 3\n--- stdout ---\npartial\n--- stderr ---\nnope"
    killed = await run("kill -TERM $$")
    assert killed.is_error
    assert killed.output == "exit code: -15\n(no output)"


async def test_no_output() -> None:
    result = await run("true")
    assert result.output == "exit code: 0\n(no output)"


async def test_cwd_absolute_and_relative_to_workspace(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    tool = make_system_run_tool(SystemRunSettings(), workspace=tmp_path)
    assert await tool.handler(command="pwd") == f"exit code: 0\n--- stdout ---\n{tmp_path}"
    relative = await tool.handler(command="pwd", cwd="sub")
    assert relative == f"exit code: 0\n--- stdout ---\n{tmp_path / 'sub'}"
    absolute = await tool.handler(command="pwd", cwd=str(tmp_path / "sub"))
    assert absolute == relative


async def test_missing_cwd_is_a_tool_error(system_run: Tool, tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    with pytest.raises(ToolError, match=f"working directory {missing} does not exist"):
        await system_run.handler(command="pwd", cwd=str(missing))
    (tmp_path / "file").write_text("")
    with pytest.raises(ToolError, match="is not a directory"):
        await system_run.handler(command="pwd", cwd=str(tmp_path / "file"))


async def test_missing_shell_is_a_tool_error() -> None:
    tool = make_system_run_tool(SystemRunSettings(shell="/nonexistent/shell"))
    with pytest.raises(ToolError, match="cannot start /nonexistent/shell"):
        await tool.handler(command="true")


async def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    command = (
        f"echo started; sleep 1000 & echo $! >> {pids}; "
        f"(sleep 1000; echo never) & echo $! >> {pids}; echo $$ >> {pids}; wait"
    )
    result = await run(command, timeout=1)
    assert result.is_error
    assert result.output.startswith("timed out after 1 s; process group killed")
    assert "--- stdout ---\nstarted" in result.output  # partial output is kept
    assert "never" not in result.output
    written = read_pids(pids)
    assert len(written) == 3
    assert [pid for pid in written if is_running(pid)] == []


async def test_timeout_argument_shortens_the_default(system_run: Tool) -> None:
    with pytest.raises(ToolError) as caught:
        await system_run.handler(command="echo hi; sleep 1000", timeout=0.5)
    assert str(caught.value) == "timed out after 0.5 s; process group killed\n--- stdout ---\nhi"


async def test_a_longer_timeout_is_clamped_to_the_configured_one() -> None:
    # The LLM asks for 100000 s against a configured 1 s: killed after 1 s, and told so.
    tool = make_system_run_tool(SystemRunSettings(timeout=1))
    registry = ToolRegistry([tool])
    result = await registry.dispatch(
        ToolCall(id="c1", name="system_run", arguments={"command": "sleep 30", "timeout": 100000})
    )
    assert result.is_error
    assert result.output == (
        "timed out after 1 s; process group killed\n(no output)\n"
        "note: timeout clamped to 1 s (the configured limit)"
    )
    quick = await registry.dispatch(
        ToolCall(id="c2", name="system.run", arguments={"command": "echo ok", "timeout": 5})
    )
    assert quick.output.endswith("note: timeout clamped to 1 s (the configured limit)")
    assert not quick.is_error


@pytest.mark.parametrize("asked", ["1e12", 1e12, float("inf"), "inf", "1e400", 10**400])
async def test_huge_timeouts_are_clamped_not_crashes(asked: object) -> None:
    tool = make_system_run_tool(SystemRunSettings(timeout=5))
    result = await ToolRegistry([tool]).dispatch(
        ToolCall(id="c1", name="system.run", arguments={"command": "echo ok", "timeout": asked})
    )
    assert not result.is_error, result.output
    assert result.output == (
        "exit code: 0\n--- stdout ---\nok\nnote: timeout clamped to 5 s (the configured limit)"
    )


@pytest.mark.parametrize(
    ("asked", "problem"),
    [
        (float("nan"), "greater than 0"),
        ("nan", "greater than 0"),
        (-1, "greater than 0"),
        (0, "greater than 0"),
        ("soon", "valid number"),
        ([1], "valid number"),
    ],
)
async def test_meaningless_timeouts_are_refused_clearly(asked: object, problem: str) -> None:
    result = await run_call({"command": "echo ran", "timeout": asked})
    assert result.is_error
    assert result.output.startswith("invalid arguments for tool system.run: argument 'timeout'")
    assert problem in result.output
    assert "ran" not in result.output


async def test_huge_output_is_cut_with_exact_dropped_count() -> None:
    result = await run("head -c 5000000 /dev/zero | tr '\\0' a", max_output_chars=10_000)
    status, body = result.output.split("\n--- stdout ---\n")
    assert status == "exit code: 0"
    head, tail = body.split("\n[... 4,990,000 characters truncated ...]\n")
    assert head == tail == "a" * 5_000


async def test_both_streams_share_the_budget() -> None:
    command = "head -c 100000 /dev/zero | tr '\\0' o; head -c 100000 /dev/zero | tr '\\0' e >&2"
    result = await run(command, max_output_chars=1_000)
    marker = "\n[... 99,500 characters truncated ...]\n"
    assert result.output == (
        f"exit code: 0\n--- stdout ---\n{'o' * 250}{marker}{'o' * 250}"
        f"\n--- stderr ---\n{'e' * 250}{marker}{'e' * 250}"
    )


async def test_invalid_utf8_and_binary_output() -> None:
    result = await run("printf 'ok\\xff\\xfe\\x00end'")
    assert not result.is_error
    assert result.output == "exit code: 0\n--- stdout ---\nok\ufffd\ufffd\x00end"


async def test_multibyte_characters_across_read_chunks() -> None:
    # 100,000 two-byte characters span several 64 KiB reads; none may be split.
    result = await run(
        "for i in $(seq 1000); do printf 'é%.0s' $(seq 100); done", max_output_chars=200_000
    )
    assert result.output == "exit code: 0\n--- stdout ---\n" + "é" * 100_000


def test_registered_by_builtin_plugin_unless_disabled(tmp_path: Path) -> None:
    from openpista.builtins.tools import register_tools

    found: list[Tool] = []
    register_tools(found.append, Settings(agent={"workspace": tmp_path}))  # type: ignore[arg-type]
    assert [t.name for t in found] == ["system.run"]
    found.clear()
    disabled = Settings(tools={"system_run": {"enabled": False}})  # type: ignore[arg-type]
    register_tools(found.append, disabled)
    assert found == []


# --- the process helper itself -------------------------------------------------------------


async def test_process_stdin_env_cwd(tmp_path: Path) -> None:
    result = await run_process(
        ["bash", "-c", 'cat; echo " $FOO $PWD"'],
        stdin=b"from stdin",
        cwd=tmp_path,
        env={**os.environ, "FOO": "bar"},
    )
    assert result.exit_code == 0
    assert result.stdout.render() == f"from stdin bar {tmp_path}\n"
    assert not result.timed_out


async def test_process_ignoring_sigterm_gets_sigkill(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # Ignored signals stay ignored across exec: the sleeps ignore SIGTERM too.
    command = f"trap '' TERM; sleep 1000 & echo $! >> {pids}; echo $$ >> {pids}; wait"
    result = await run_process(["bash", "-c", command], timeout=0.5, kill_grace=0.2)
    assert result.timed_out
    assert result.exit_code == -9
    assert [pid for pid in read_pids(pids) if is_running(pid)] == []


async def test_cancellation_kills_the_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    command = f"sleep 1000 & echo $! >> {pids}; echo $$ >> {pids}; wait"
    task = asyncio.create_task(run_process(["bash", "-c", command]))
    written = await asyncio.wait_for(wait_for_pids(pids, 2), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [pid for pid in written if is_running(pid)] == []


async def test_process_output_is_read_while_stdin_is_written() -> None:
    # 4 MB through cat: writing stdin and reading stdout at once is the only way through.
    data = b"x" * 4_000_000
    result = await run_process(["cat"], stdin=data, max_chars=100)
    assert result.exit_code == 0
    assert result.stdout.dropped == 3_999_900
    assert result.stdout.render().startswith("x" * 50 + "\n[... 3,999,900 characters")


def test_captured_text_clipping() -> None:
    text = CapturedText(head="abcdef", tail="uvwxyz", dropped=10)
    assert text.clipped(100) is text
    clipped = text.clipped(4)
    assert (clipped.head, clipped.tail, clipped.dropped) == ("ab", "yz", 18)
    lopsided = CapturedText(head="a", tail="0123456789").clipped(5)
    assert (lopsided.head, lopsided.tail, lopsided.dropped) == ("a", "6789", 6)
    assert CapturedText(head="a\n", tail="b", dropped=1_234).render() == (
        "a\n[... 1,234 characters truncated ...]\nb"
    )
