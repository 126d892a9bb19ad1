"""Directory plugins end to end: `openpista plugins install` a WASM tool plugin built from
C, the agent calls its tools with only the permissions it was granted, a misbehaving
plugin is a tool error, and a running daemon picks up installs and removals."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import shutil
import tarfile
import threading
import time
from collections.abc import Callable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from openpista_testing.cli import Cli
from openpista_testing.daemon import DEADLINE, Daemon
from openpista_testing.emulator import LlmEmulator

from .conftest import REPO_ROOT, build_wasm

pytestmark = pytest.mark.e2e
EXAMPLE = REPO_ROOT / "plugins" / "textstats"


def tool_outputs(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def echo_last_tool_output(body: dict[str, Any]) -> str:
    return "The tool said: " + tool_outputs(body)[-1]


def offered(body: dict[str, Any]) -> list[str]:
    return [tool["function"]["name"] for tool in body.get("tools", [])]


@pytest.fixture
def cli(tmp_path: Path, llm_emulator: LlmEmulator) -> Cli:
    cli = Cli.isolated(tmp_path / "home", llm_emulator)
    cli.env["OPENPISTA_LOAD_PLUGINS"] = "wasm"
    notes = cli.home / "workspace" / "notes"
    notes.mkdir(parents=True)
    (notes / "todo.txt").write_text("water the plants\nfeed the cat\n")
    (cli.home / "workspace" / "secret.txt").write_text("the launch code is 0000\n")
    return cli


@pytest.fixture
def textstats(tmp_path: Path) -> Path:
    """The example plugin with its module rebuilt from the C source by Debian's clang."""
    folder = tmp_path / "textstats"
    shutil.copytree(EXAMPLE, folder)
    build_wasm(folder / "textstats.c", folder / "textstats.wasm")
    digest = hashlib.sha256((folder / "textstats.wasm").read_bytes()).hexdigest()
    manifest = folder / "plugin.toml"
    manifest.write_text(re.sub(r'sha256 = "\w+"', f'sha256 = "{digest}"', manifest.read_text()))
    return folder


def test_install_shows_the_permissions_and_asks(cli: Cli, textstats: Path) -> None:
    refused = cli("plugins", "install", str(textstats), stdin="n\n")
    assert refused.returncode == 1
    assert "reads: notes (of the workspace)" in refused.stdout
    assert "network: none" in refused.stdout
    assert "not installed" in refused.stderr
    done = cli("plugins", "install", str(textstats), stdin="y\n")
    assert done.returncode == 0, done.stderr
    assert "✓ installed textstats 1.0.0: plugin.textstats.count, plugin.textstats.peek" in (
        done.stdout
    )
    listed = cli("plugins")
    assert "textstats 1.0.0  (directory plugin, enabled;" in listed.stdout
    assert cli("plugins", "disable", "textstats").returncode == 0
    assert "(directory plugin, disabled;" in cli("plugins").stdout
    gone = cli("plugins", "remove", "textstats")
    assert gone.returncode == 0
    again = cli("plugins", "remove", "textstats")
    assert again.returncode == 1
    assert "no plugin 'textstats' is installed" in again.stderr


def test_the_agent_calls_plugin_tools_within_their_permissions(
    cli: Cli, llm_emulator: LlmEmulator, textstats: Path
) -> None:
    assert cli("plugins", "install", str(textstats), "--yes").returncode == 0
    calls = [
        ("plugin_textstats_count", {"text": "one two three\nfour"}),
        ("plugin_textstats_peek", {"file": "notes/todo.txt"}),
        ("plugin_textstats_peek", {"file": "secret.txt"}),  # not granted
        ("plugin_textstats_peek", {"file": "notes/../secret.txt"}),  # not granted either
        ("plugin_textstats_count", {"text": 7}),  # not what the schema allows
    ]
    for name, arguments in calls:
        llm_emulator.reply_tool_calls([(name, arguments)])
    llm_emulator.reply(lambda body: "\n".join(tool_outputs(body)))
    done = cli("run", "-e", "count and peek")
    assert done.returncode == 0, done.stderr
    assert "plugin_textstats_count" in offered(llm_emulator.requests[0].json)
    outputs = tool_outputs(llm_emulator.requests[-1].json)
    assert outputs[0] == "2 lines, 4 words, 18 characters"
    assert outputs[1] == "water the plants"
    for refused in outputs[2:4]:  # the sandbox has no capability outside notes/
        assert refused.endswith(("Capabilities insufficient", "Operation not permitted"))
        assert "launch code" not in refused
    assert "invalid arguments for tool plugin.textstats.count" in outputs[4]


def test_a_plugin_that_loops_traps_or_bloats_is_a_tool_error_and_stays_loaded(
    cli: Cli, llm_emulator: LlmEmulator, guests: Callable[[str], Path], tmp_path: Path
) -> None:
    for name, guest in (("spin", "spin"), ("trap", "trap"), ("bomb", "memory_bomb")):
        folder = tmp_path / "bad" / name
        folder.mkdir(parents=True)
        module = shutil.copy(guests(guest), folder / f"{name}.wasm")
        digest = hashlib.sha256(Path(module).read_bytes()).hexdigest()
        (folder / "plugin.toml").write_text(
            f'name = "{name}"\nversion = "0.1"\nkind = "wasm"\nmodule = "{name}.wasm"\n'
            f'sha256 = "{digest}"\n[permissions]\ntimeout = 0.5\nmemory_mb = 8\n'
            f'[[tools]]\nname = "go"\ndescription = "Misbehaves."\n'
        )
        assert cli("plugins", "install", str(folder), "--yes").returncode == 0
    for name in ("spin", "trap", "bomb", "spin"):
        llm_emulator.reply_tool_calls([(f"plugin_{name}_go", {})])
    llm_emulator.reply(lambda body: "\n".join(tool_outputs(body)))
    done = cli("run", "-e", "misbehave")
    assert done.returncode == 0, done.stderr
    spun, trapped, bombed, again = tool_outputs(llm_emulator.requests[-1].json)
    assert "ran longer than its 0.5 s time bound" in spun
    assert "crashed: wasm trap" in trapped
    assert "of its 8 MB cap" in bombed
    assert "ran longer than" in again  # still loaded, still bounded


def test_a_running_daemon_picks_up_installs_and_removals(
    cli: Cli, llm_emulator: LlmEmulator, textstats: Path, daemons: Callable[..., Daemon]
) -> None:
    daemon = daemons(cli)
    deadline = time.monotonic() + DEADLINE
    while cli("status").returncode != 0:
        assert daemon.process.poll() is None, daemon.output()
        assert time.monotonic() < deadline, "the daemon never served"
        time.sleep(0.1)

    def tools_of_next_turn() -> list[str]:
        llm_emulator.reply_text("ok")
        assert cli("run", "-e", "which tools?").returncode == 0
        return offered(llm_emulator.requests[-1].json)

    assert "plugin_textstats_count" not in tools_of_next_turn()
    assert cli("plugins", "install", str(textstats), "--yes").returncode == 0
    deadline = time.monotonic() + DEADLINE
    while "plugin_textstats_count" not in tools_of_next_turn():
        assert time.monotonic() < deadline, "the daemon never loaded the installed plugin"
        time.sleep(0.5)
    llm_emulator.reply_tool_calls([("plugin_textstats_count", {"text": "a b"})])
    llm_emulator.reply(echo_last_tool_output)
    used = cli("run", "-e", "count a b")
    assert "The tool said: 1 lines, 2 words, 3 characters" in used.stdout
    assert cli("plugins", "remove", "textstats").returncode == 0
    deadline = time.monotonic() + DEADLINE
    while "plugin_textstats_count" in tools_of_next_turn():
        assert time.monotonic() < deadline, "the daemon kept the removed plugin's tools"
        time.sleep(0.5)


def test_install_from_a_url_of_an_archive(cli: Cli, textstats: Path, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    with tarfile.open(served / "textstats.tar.gz", "w:gz") as archive:
        archive.add(textstats, arcname="textstats")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        done = cli("plugins", "install", f"{base}/textstats.tar.gz", "--yes")
        assert done.returncode == 0, done.stderr
        assert "✓ installed textstats 1.0.0" in done.stdout
        missing = cli("plugins", "install", f"{base}/other.tar.gz", "--yes")
        assert missing.returncode == 1
        assert "cannot download" in missing.stderr
        page = cli("plugins", "install", f"{base}/index.html", "--yes")
        assert "give the URL of a .tar.gz or .zip plugin archive" in page.stderr
    finally:
        server.shutdown()


async def test_the_watcher_swaps_tools_when_a_plugin_changes(
    textstats: Path, tmp_path: Path
) -> None:
    """A changed manifest, a disabled plugin, a removed one: each is one swap of the whole
    set (calls already running keep the tool they started with)."""
    from openpista.plugin_dir import install, set_enabled
    from openpista.tools import Tool
    from openpista_wasm.directory import PluginWatcher

    root = tmp_path / "plugins"
    install(textstats, root)
    swaps: list[tuple[list[str], list[str]]] = []

    def build(plugins: list[Any]) -> list[Tool]:
        async def nothing() -> str:
            return ""

        return [
            Tool(name=p.manifest.tool_name(t), description="", handler=nothing)
            for p in plugins
            if p.manifest is not None and p.enabled
            for t in p.manifest.tools
        ]

    def update(remove: list[str], add: list[Tool]) -> list[str]:
        swaps.append((remove, [tool.name for tool in add]))
        return []

    from openpista.plugin_dir import discover

    watcher = PluginWatcher(root, build, update, build(discover(root)))
    assert not await watcher.check()  # nothing changed yet
    manifest = root / "textstats" / "plugin.toml"
    manifest.write_text(manifest.read_text().replace('name = "peek"', 'name = "glance"'))
    assert await watcher.check()
    assert swaps[-1][1] == ["plugin.textstats.count", "plugin.textstats.glance"]
    assert "plugin.textstats.peek" in swaps[-1][0]
    set_enabled("textstats", False, root)
    assert await watcher.check()
    assert swaps[-1] == (["plugin.textstats.count", "plugin.textstats.glance"], [])
    shutil.rmtree(root / "textstats")
    assert await watcher.check()
    assert swaps[-1] == ([], [])


@pytest.fixture
def sleepy(guests: Callable[[str], Path], tmp_path: Path) -> Path:
    """A plugins directory holding ``sleepy``, whose one tool sleeps 3 s in a WASI call."""
    from openpista.plugin_dir import install

    folder = tmp_path / "src" / "sleepy"
    folder.mkdir(parents=True)
    module = Path(shutil.copy(guests("sleeper"), folder / "sleepy.wasm"))
    digest = hashlib.sha256(module.read_bytes()).hexdigest()
    (folder / "plugin.toml").write_text(
        f'name = "sleepy"\nversion = "1"\nkind = "wasm"\nmodule = "sleepy.wasm"\n'
        f'sha256 = "{digest}"\n[[tools]]\nname = "nap"\ndescription = "Naps."\n'
    )
    root = tmp_path / "plugins"
    install(folder, root)
    return root


async def test_a_call_running_when_its_plugin_is_removed_finishes(
    sleepy: Path, tmp_path: Path
) -> None:
    """Removing a plugin swaps its tools out; a call already running still gets its answer."""
    from openpista.plugin_dir import discover
    from openpista_wasm.directory import plugin_tools
    from openpista_wasm.runner import WasmSkillRunner
    from openpista_wasm.settings import WasmSettings

    runner = WasmSkillRunner(WasmSettings(cache_dir=tmp_path / "cache"), tmp_path)
    try:
        [nap] = plugin_tools(discover(sleepy), runner, tmp_path, ceiling=30)
        call = asyncio.create_task(nap.handler())
        stats = runner.stats
        while not (stats.compiled or stats.loaded_from_disk or stats.reused_in_memory):
            assert not call.done(), call.result()
            await asyncio.sleep(0.01)  # until the module is loaded: then it sleeps 3 s
        await asyncio.to_thread(shutil.rmtree, sleepy / "sleepy")
        assert discover(sleepy) == []
        assert await asyncio.wait_for(call, 30) == "woke up"
    finally:
        runner.close()
