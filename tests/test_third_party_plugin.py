"""A third-party plugin, built from the example in docs/plugins.md, is found and used.

The distribution is built with hatchling into a wheel and installed into a private
directory on the subprocess's PYTHONPATH, so entry-point discovery works exactly as for a
``pip install``-ed plugin without touching the test environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from openpista_testing.cli import Cli
from openpista_testing.daemon import Daemon
from openpista_testing.emulator import LlmEmulator
from openpista_testing.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.e2e

BROKEN_PLUGIN = {
    "pyproject.toml": """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "openpista-broken"
version = "0.0.1"

[project.entry-points.openpista]
broken = "openpista_broken"

[tool.hatch.build.targets.wheel]
packages = ["openpista_broken"]
""",
    "openpista_broken/__init__.py": "import module_that_does_not_exist  # noqa: F401\n",
}


def plugin_files(name: str, module: str) -> dict[str, str]:
    """A distribution ``openpista-<name>`` whose entry point ``<name>`` is ``module``."""
    return {
        "pyproject.toml": BROKEN_PLUGIN["pyproject.toml"].replace("broken", name),
        f"openpista_{name}/__init__.py": module,
    }


RAISING_PROVIDERS = """
from openpista import hookimpl


@hookimpl
def register_providers(register):
    raise RuntimeError("the provider SDK is missing")
"""

TWIN = """
from openpista import ProviderPreset, hookimpl, tool


@tool("system.run")
async def run(command: str) -> str:
    \"\"\"A second system.run.\"\"\"
    return command


@hookimpl
def register_providers(register):
    register(ProviderPreset(name="openai", factory=None, default_model="m", description="twin"))


@hookimpl
def register_tools(register):
    register(run)


@hookimpl
def register_channels(register):
    register("cli", None)
"""


CHANNEL_EXAMPLE = "pigeon/"  # the titles of the channel example's files start with it


def files_from_docs(example: str = "") -> dict[str, str]:
    """The code blocks of docs/plugins.md that carry a ``title="<path>"``: those of the tool
    example, or with ``example`` those titled ``<example>/<path>`` (prefix removed)."""
    text = (REPO_ROOT / "docs" / "plugins.md").read_text()
    blocks = dict(re.findall(r'```\w+ title="([^"]+)"\n(.*?)```', text, re.S))
    if not example:
        return {p: code for p, code in blocks.items() if not p.startswith(CHANNEL_EXAMPLE)}
    prefix = f"{example}/"
    return {p.removeprefix(prefix): code for p, code in blocks.items() if p.startswith(prefix)}


def install(files: dict[str, str], workdir: Path, site: Path) -> None:
    for name, content in files.items():
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    command += ["--no-build-isolation", "--no-index", "--target", str(site), str(workdir)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"pip could not install {workdir.name}:\n{done.stderr}"


@pytest.fixture
def plugin_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    install(files_from_docs(), tmp_path / "hello", site)
    install(BROKEN_PLUGIN, tmp_path / "broken", site)
    install(plugin_files("raising", RAISING_PROVIDERS), tmp_path / "raising", site)
    install(plugin_files("twin", TWIN), tmp_path / "twin", site)
    return site


def with_site(cli: Cli, site: Path, load: str | None) -> Cli:
    cli.env["PYTHONPATH"] = str(site)
    cli.env.pop("OPENPISTA_LOAD_PLUGINS", None)
    if load is not None:
        cli.env["OPENPISTA_LOAD_PLUGINS"] = load
    return cli


def test_docs_examples_have_both_files() -> None:
    assert set(files_from_docs()) == {"pyproject.toml", "openpista_hello/__init__.py"}
    assert set(files_from_docs("pigeon")) == {"pyproject.toml", "openpista_pigeon/__init__.py"}


def test_plugin_is_listed_and_a_broken_one_is_reported(cli: Cli, plugin_site: Path) -> None:
    done = with_site(cli, plugin_site, None)("plugins", "--json")
    assert done.returncode == 0, done.stderr
    reports = {r["name"]: r for r in json.loads(done.stdout)}
    hello = reports["hello"]
    assert (hello["distribution"], hello["version"]) == ("openpista-hello", "0.1.0")
    assert hello["registered"]["tools"] == ["hello.greet"]
    assert not hello["errors"]
    assert "ModuleNotFoundError" in reports["broken"]["errors"][0]
    assert reports["raising"]["errors"] == [
        "register_providers failed: RuntimeError: the provider SDK is missing"
    ]
    twin = reports["twin"]
    assert twin["registered"] == {
        "providers": ["openai"],
        "tools": ["system.run"],
        "channels": ["cli"],
    }
    assert len(twin["errors"]) == 3, twin["errors"]
    assert twin["errors"][0] == "tool system.run is already registered"
    assert twin["errors"][1].startswith(
        "provider 'openai' is registered twice; the first one is kept"
    )
    assert twin["errors"][2] == "channel 'cli' is already provided"
    assert not any(reports[name]["errors"] for name in ("tools", "providers", "channels"))


def test_a_raising_provider_plugin_and_twins_leave_every_command_working(
    cli: Cli, plugin_site: Path, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply_text("still here")
    done = with_site(cli, plugin_site, "raising,twin")("run", "-e", "hello")
    assert done.returncode == 0, done.stderr
    assert "still here" in done.stdout
    assert "register_providers failed: RuntimeError: the provider SDK is missing" in done.stderr
    listed = with_site(cli, plugin_site, "raising,twin")("model", "list")
    assert listed.returncode == 0, listed.stderr
    assert "openai" in listed.stdout


def test_plugin_tool_is_offered_to_the_llm_and_runs(
    cli: Cli, plugin_site: Path, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply_tool_calls([("hello_greet", {"name": "Ada"})])
    llm_emulator.reply(
        lambda body: [m for m in body["messages"] if m["role"] == "tool"][-1]["content"]
    )
    done = with_site(cli, plugin_site, "hello")("run", "-e", "greet Ada")
    assert done.returncode == 0, done.stderr
    assert "Hello, Ada! (from the hello plugin)" in done.stdout
    offered = [t["function"] for t in llm_emulator.requests[0].json["tools"]]
    greet = next(f for f in offered if f["name"] == "hello_greet")
    assert greet["description"] == "Greet someone by name."
    assert greet["parameters"]["properties"]["name"]["type"] == "string"
    assert greet["parameters"]["required"] == ["name"]


def test_load_plugins_variable_selects_plugins(cli: Cli, plugin_site: Path) -> None:
    only_hello = with_site(cli, plugin_site, "hello")("plugins", "--json")
    names = {r["name"] for r in json.loads(only_hello.stdout)}
    assert "hello" in names
    assert "broken" not in names
    none = with_site(cli, plugin_site, "")("plugins", "--json")
    names = {r["name"] for r in json.loads(none.stdout)}
    assert not {"hello", "broken"} & names
    assert {"tools", "providers", "skills"} <= names


def test_plugins_checks_the_tables_of_registered_settings(cli: Cli) -> None:
    cli.env["OPENPISTA_LOAD_PLUGINS"] = "web,browser"
    cli.write_config(
        cli.config.read_text() + '\n[channels.web]\nport = "high"\n\n[tools.browser]\ntimeout = 0\n'
    )
    done = cli("plugins")
    assert done.returncode == 0, done.stderr
    assert "❌ [channels.web] port: Input should be a valid integer" in done.stdout
    assert "❌ [tools.browser] timeout: Input should be greater than 0" in done.stdout


PIGEON_CONTRACT = """
import asyncio

from openpista_pigeon import PigeonAdapter, PigeonSettings
from openpista_testing.contracts import ChannelContract


class TestPigeon(ChannelContract):
    async def make_adapter(self):
        self.reader = self.writer = None
        self.lines = []
        return PigeonAdapter(PigeonSettings(port=0))

    async def deliver(self, adapter, text):
        if self.writer is None:
            port = adapter.server.sockets[0].getsockname()[1]
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.writer.write(text.encode() + b"\\n")
        await self.writer.drain()

    async def received(self, adapter):
        while True:
            try:
                line = await asyncio.wait_for(self.reader.readline(), 0.05)
            except TimeoutError:
                return self.lines
            if not line:
                return self.lines
            self.lines.append(line.decode())
"""


@pytest.fixture
def pigeon_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    install(files_from_docs("pigeon"), tmp_path / "pigeon", site)
    return site


def test_the_docs_channel_example_passes_the_channel_contract(
    pigeon_site: Path, tmp_path: Path
) -> None:
    """As its author would: a pytest of its own, with openpista-testing's contract suite."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_pigeon.py").write_text(PIGEON_CONTRACT)
    (suite / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)],
        cwd=suite,
        env={**os.environ, "PYTHONPATH": str(pigeon_site)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_the_docs_channel_example_chats_through_a_real_daemon(
    cli: Cli, pigeon_site: Path, llm_emulator: LlmEmulator, daemons: Callable[..., Daemon]
) -> None:
    port = free_port()
    cli.write_config(
        cli.config.read_text() + f"\n[channels.pigeon]\nenabled = true\nport = {port}\n"
    )
    with_site(cli, pigeon_site, "pigeon")
    llm_emulator.reply_text("coo coo")
    llm_emulator.reply_tool_calls([("system_run", {"command": "echo from-the-tool"})])
    llm_emulator.reply(lambda body: "tool said " + body["messages"][-1]["content"].strip())
    daemon = daemons(cli, "--no-terminal")
    try:
        with eventually_connected(port, daemon.process) as chat:
            chat.sendall(b"hello pigeon\n")
            assert read_until(chat, "coo coo")
            chat.sendall(b"/help\n")
            assert "/model" in read_until(chat, "/model")
            chat.sendall(b"run the tool\n")  # a remote chat: the policy asks first
            prompt = read_until(chat, "/approve ")
            request = re.search(r"/approve (\w+)", prompt)
            assert request is not None, prompt
            chat.sendall(f"/approve {request.group(1)}\n".encode())
            assert read_until(chat, "tool said")
        assert "from-the-tool" in llm_emulator.requests[-1].json["messages"][-1]["content"]
    finally:
        code = daemon.stop()
    assert code == 0, daemon.output()
    assert "Traceback" not in daemon.output()


@contextlib.contextmanager
def eventually_connected(port: int, daemon: subprocess.Popen[str]) -> Iterator[socket.socket]:
    """A TCP connection to the daemon's pigeon channel, once it serves."""
    end = time.monotonic() + 60
    while True:
        try:
            chat = socket.create_connection(("127.0.0.1", port), timeout=60)
            break
        except OSError:
            assert daemon.poll() is None, daemon.communicate()[1]
            assert time.monotonic() < end, "the pigeon channel never served"
            time.sleep(0.2)
    with chat:
        yield chat


def read_until(chat: socket.socket, needle: str) -> str:
    """What the channel wrote until a line holding ``needle`` (read with the socket's
    timeout; a channel that never writes it fails the test)."""
    seen = b""
    while needle.encode() not in seen:
        data = chat.recv(65536)
        assert data, f"the channel hung up; it wrote {seen!r}"
        seen += data
    return seen.decode()


SERVICES_COMMAND = """
from openpista import ChatCommand, CommandReply, hookimpl


@hookimpl
def register_chat_commands(register, context):
    async def run(call):
        services = context.services
        channels = "none" if services is None else ",".join(services.channels)
        return CommandReply(text=f"services: {channels}")

    register(ChatCommand(name="services", summary="the daemon's channels", run=run))
"""


def test_plugin_commands_see_the_daemon_services_from_the_first_to_the_last_message(
    cli: Cli, tmp_path: Path
) -> None:
    """Piped input is read at once and drained at its end: both commands run while the
    daemon serves, so both see its services."""
    site = tmp_path / "site"
    install(plugin_files("services", SERVICES_COMMAND), tmp_path / "services", site)
    done = with_site(cli, site, "services")("start", stdin="/services\n/services\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("services: cli") == 2, done.stdout + done.stderr


def test_plugins_install_pip_installs_a_distribution_and_names_its_new_plugins(
    cli: Cli, tmp_path: Path
) -> None:
    """`openpista plugins install openpista-pigeon`: pip does the work (its settings come
    from the environment: here a local wheel, a private target), openpista says what's new."""
    source = tmp_path / "pigeon"
    for name, content in files_from_docs("pigeon").items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(content)
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index"]
    built = subprocess.run(
        [*wheel, "--no-build-isolation", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    with_site(cli, site, None)
    cli.env.update(
        PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels), PIP_TARGET=str(site), PIP_NO_DEPS="1"
    )
    refused = cli("plugins", "install", "openpista-pigeon", stdin="n\n")
    assert refused.returncode == 1
    assert "not installed" in refused.stderr
    done = cli("plugins", "install", "openpista-pigeon", "--yes")
    assert done.returncode == 0, done.stderr
    assert "✓ new plugins: pigeon" in done.stdout
    assert "Restart the daemon" in done.stdout
    assert "pigeon" in cli("plugins").stdout
    missing = cli("plugins", "install", "openpista-no-such-plugin", "--yes")
    assert missing.returncode == 1
    assert "pip could not install openpista-no-such-plugin" in missing.stderr
    nonsense = cli("plugins", "install", "no/such/path")
    assert nonsense.returncode == 1
    assert "neither a plugin folder or archive nor an openpista-NAME" in nonsense.stderr
