"""End to end: the installed ``openpista`` command runs a WASM skill through this plugin."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from openpista.skills.base import Skill
from openpista_testing.cli import Cli
from openpista_testing.emulator import LlmEmulator

pytestmark = pytest.mark.e2e


def tool_outputs(body: dict[str, Any]) -> list[str]:
    """The tool results the agent sent back in an OpenAI chat request."""
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def echo_last_tool_output(body: dict[str, Any]) -> str:
    return "The tool said: " + tool_outputs(body)[-1]


@pytest.fixture
def wasm_cli(tmp_path: Path, llm_emulator: LlmEmulator, hello: Skill) -> Cli:
    """An isolated CLI loading only this plugin, hello-wasm copied into its workspace."""
    cli = Cli.isolated(tmp_path / "home", llm_emulator)
    cli.env["OPENPISTA_LOAD_PLUGINS"] = "wasm"
    shutil.copytree(hello.path, cli.home / "workspace" / "hello-wasm")
    return cli


def test_agent_runs_the_hello_wasm_skill(wasm_cli: Cli, llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_tool_calls([("skill_hello-wasm", {"name": "Ada"})])
    llm_emulator.reply(echo_last_tool_output)

    done = wasm_cli("run", "-e", "greet Ada from webassembly")

    assert done.returncode == 0, done.stderr
    assert "The tool said: Hello, Ada! (from WebAssembly)" in done.stdout
    first_request = llm_emulator.requests[0].json
    assert "skill_hello-wasm" in [tool["function"]["name"] for tool in first_request["tools"]]
    assert "hello-wasm" in first_request["messages"][0]["content"]
    # The compiled module was cached under the home; a second process reuses the file.
    [cached] = (wasm_cli.home / ".openpista" / "wasm" / "cache").glob("*.cwasm")
    written = cached.stat().st_mtime_ns
    llm_emulator.reply_tool_calls([("skill_hello-wasm", {"name": "Bo"})])
    llm_emulator.reply(echo_last_tool_output)
    again = wasm_cli("run", "-e", "greet Bo")
    assert again.returncode == 0, again.stderr
    assert "Hello, Bo! (from WebAssembly)" in again.stdout
    assert cached.stat().st_mtime_ns == written


def test_the_skill_reads_the_workspace_named_in_the_config(
    wasm_cli: Cli, llm_emulator: LlmEmulator
) -> None:
    (wasm_cli.home / "workspace" / "todo.txt").write_text("buy oat milk\nfeed the cat\n")
    llm_emulator.reply_tool_calls([("skill_hello-wasm", {"name": "Cy", "file": "todo.txt"})])
    llm_emulator.reply(echo_last_tool_output)
    done = wasm_cli("run", "-e", "what is first in todo.txt?")
    assert done.returncode == 0, done.stderr
    assert "The first line of todo.txt is: buy oat milk" in done.stdout


def test_runaway_and_crashing_skills_are_tool_errors_and_the_process_goes_on(
    wasm_cli: Cli, llm_emulator: LlmEmulator, guests: Callable[[str], Path]
) -> None:
    for name, front_matter in [("spin", "timeout: 0.5\n"), ("memory_bomb", "memory_mb: 8\n")]:
        folder = wasm_cli.home / "workspace" / name
        folder.mkdir()
        shutil.copy(guests(name), folder / "main.wasm")
        (folder / "SKILL.md").write_text(f"---\nmode: wasm\n{front_matter}---\nMisbehaves.\n")
    llm_emulator.reply_tool_calls([("skill_spin", {})])
    llm_emulator.reply_tool_calls([("skill_memory_bomb", {})])
    llm_emulator.reply_tool_calls([("skill_hello-wasm", {})])
    llm_emulator.reply(lambda body: "\n=====\n".join(tool_outputs(body)))

    done = wasm_cli("run", "-e", "try all three")

    assert done.returncode == 0, done.stderr
    spin, bomb, hello = done.stdout.strip().split("\n=====\n")
    assert "skill spin ran longer than its 0.5 s time bound and was stopped" in spin
    assert "skill memory_bomb crashed: wasm trap (unreachable)" in bomb
    assert "of its 8 MB cap" in bomb
    assert hello.strip() == "Hello, world! (from WebAssembly)"


def test_without_the_plugin_the_skill_says_what_to_install(
    wasm_cli: Cli, llm_emulator: LlmEmulator
) -> None:
    wasm_cli.env["OPENPISTA_LOAD_PLUGINS"] = ""
    llm_emulator.reply_tool_calls([("skill_hello-wasm", {})])
    llm_emulator.reply(echo_last_tool_output)
    done = wasm_cli("run", "-e", "hello")
    assert done.returncode == 0, done.stderr
    assert "install the openpista-wasm plugin" in done.stdout
