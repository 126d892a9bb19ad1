"""What tool processes inherit (a scrubbed environment, no stray descriptors, default signal
dispositions) and that they die with openpista, grandchildren included; real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from openpista.builtins.skills import register_skill_runners
from openpista.builtins.tools import register_tools
from openpista.config import ConfigError, Settings, load_config
from openpista.models import ToolCall
from openpista.skills.base import SkillRunner
from openpista.skills.loader import SkillLoader
from openpista.tools.base import Tool
from openpista.tools.process import SAFE_ENVIRONMENT, run_process, tool_environment
from openpista.tools.registry import ToolRegistry
from openpista_testing.processes import is_running

EXAMPLE = Path(__file__).resolve().parents[3] / "config.example.toml"
SECRETS = {
    "OPENAI_API_KEY": "sk-secret-openai",
    "ANTHROPIC_API_KEY": "sk-ant-secret",
    "TELEGRAM_BOT_TOKEN": "123:secret-telegram",
    "WHATSAPP_APP_SECRET": "secret-whatsapp",
    "WHATSAPP_ACCESS_TOKEN": "secret-graph",
    "OPENPISTA_WEB__TOKEN": "secret-web",
    "AWS_SECRET_ACCESS_KEY": "secret-aws",
}


@pytest.fixture
def daemon_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment of a daemon: the safe variables, and secrets next to them."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LC_TIME", "C.UTF-8")
    monkeypatch.setenv("MY_VAR", "passed on purpose")


def shown_environment(text: str) -> dict[str, str]:
    """``env`` output (one NAME=value per line) as a dict; other lines are ignored."""
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return dict(pairs)


def assert_no_secret(text: str) -> None:
    for name, value in SECRETS.items():
        assert name not in text
        assert value not in text


# -- the environment ----------------------------------------------------------------------------


def test_tool_environment_is_an_allowlist() -> None:
    source = {
        "PATH": "/usr/bin",
        "HOME": "/home/me",
        "LC_ALL": "C",
        "LANG": "C.UTF-8",
        "MY_VAR": "x",
        **SECRETS,
    }
    assert tool_environment(source=source) == {
        "PATH": "/usr/bin",
        "HOME": "/home/me",
        "LC_ALL": "C",
        "LANG": "C.UTF-8",
    }
    passed = tool_environment(["MY_VAR", "NOT_SET"], source=source)
    assert passed["MY_VAR"] == "x"
    assert "NOT_SET" not in passed
    assert not SAFE_ENVIRONMENT & set(SECRETS)


@pytest.mark.usefixtures("daemon_environment")
async def test_env_through_system_run_shows_no_secret(tmp_path: Path) -> None:
    found: list[Tool] = []
    settings = Settings(agent={"workspace": tmp_path}, tools={"env_passthrough": ["MY_VAR"]})  # type: ignore[arg-type]
    register_tools(found.append, settings)
    result = await ToolRegistry(found).dispatch(
        ToolCall(id="c1", name="system_run", arguments={"command": "env"})
    )
    assert not result.is_error, result.output
    assert_no_secret(result.output)
    shown = shown_environment(result.output)
    assert shown["PATH"] == os.environ["PATH"]
    assert shown["HOME"] == os.environ["HOME"]
    assert shown["LC_TIME"] == "C.UTF-8"
    assert shown["MY_VAR"] == "passed on purpose"  # the opt-in passthrough


@pytest.mark.usefixtures("daemon_environment")
async def test_subprocess_skills_get_the_scrubbed_environment(tmp_path: Path) -> None:
    folder = tmp_path / "showenv"
    folder.mkdir()
    (folder / "SKILL.md").write_text("---\nname: showenv\n---\nShows its environment.\n")
    (folder / "run.sh").write_text("env\n")
    (skill,) = SkillLoader(tmp_path).discover().skills
    runners: dict[str, SkillRunner] = {}
    settings = Settings(tools={"env_passthrough": ["MY_VAR"]})  # type: ignore[arg-type]
    register_skill_runners(runners.__setitem__, settings)
    output = await runners["subprocess"].run(skill, {}, timeout=30)
    assert_no_secret(output)
    shown = shown_environment(output)
    assert shown["OPENPISTA_SKILL_DIR"] == str(folder)
    assert shown["MY_VAR"] == "passed on purpose"


@pytest.mark.usefixtures("daemon_environment")
async def test_run_process_scrubs_by_default() -> None:
    result = await run_process(["env"])
    assert result.exit_code == 0
    assert_no_secret(result.stdout.render())
    assert "MY_VAR" not in result.stdout.render()


def test_passthrough_is_configured_under_tools(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[tools]\nenv_passthrough = ["MY_VAR", "_X1"]\n')
    assert load_config(path).tools.env_passthrough == ["MY_VAR", "_X1"]
    path.write_text('[tools]\nenv_passthrough = ["MY VAR=1"]\n')
    with pytest.raises(ConfigError, match="env_passthrough"):
        load_config(path)
    assert tomllib.loads(EXAMPLE.read_text())["tools"]["env_passthrough"] == []


# -- what else the program inherits -------------------------------------------------------------


async def test_the_program_gets_no_extra_descriptors_and_default_signals() -> None:
    script = "import os; print(sorted(int(fd) for fd in os.listdir('/proc/self/fd')))"
    listing = await run_process([sys.executable, "-c", script])
    # 0-2, plus the one listdir itself opened: the lifeline is not among them.
    assert listing.stdout.render().strip() == "[0, 1, 2, 3]"
    # SIGPIPE is back to its default (Python ignores it): `yes` dies of it as usual.
    piped = await run_process(["bash", "-c", 'yes | head -n 1; echo "${PIPESTATUS[0]}"'])
    assert piped.stdout.render() == "y\n141\n"
    assert piped.stderr.is_empty


async def test_programs_that_cannot_start_raise_like_exec(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await run_process(["no-such-program-4711"])
    with pytest.raises(FileNotFoundError):
        await run_process([str(tmp_path / "missing")])
    plain = tmp_path / "plain.sh"
    plain.write_text("echo hi\n")
    with pytest.raises(PermissionError):
        await run_process([str(plain)])
    with pytest.raises(PermissionError):
        await run_process([str(tmp_path)])


# -- parent death -------------------------------------------------------------------------------


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


async def wait_until(condition: object, seconds: float = 10.0) -> bool:
    """Poll ``condition()`` (other processes cannot be awaited), bounded by ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if condition():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return False


async def test_killing_the_parent_kills_the_whole_group(tmp_path: Path) -> None:
    """A parent running a command with a background grandchild gets SIGKILL: both go."""
    pids = tmp_path / "pids"
    command = f"sleep 1000 & echo $! >> {pids}; echo $$ >> {pids}; wait"
    parent = textwrap.dedent(
        f"""
        import asyncio
        from openpista.tools.process import run_process
        asyncio.run(run_process(["bash", "-c", {command!r}]))
        """
    )
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", parent)
    try:
        assert await wait_until(lambda: len(read_pids(pids)) == 2, 30)
        written = read_pids(pids)
        assert all(is_running(pid) for pid in written)
        process.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(process.wait(), 30) == -signal.SIGKILL
        assert await wait_until(lambda: not any(is_running(pid) for pid in written))
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_finished_run_leaves_no_watcher_behind() -> None:
    result = await run_process(["bash", "-c", "echo $$"])
    pgid = int(result.stdout.render())
    assert await wait_until(lambda: group_members(pgid) == [])


def read_pids(path: Path) -> list[int]:
    return [int(pid) for pid in path.read_text().split()] if path.exists() else []
