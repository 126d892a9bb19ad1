"""Directory plugins' tools: each tool of an enabled ``~/.openpista/plugins/<name>`` runs
its WASM module in the sandbox with exactly what the manifest's permissions grant.

A tool call runs the module with ``argv[0]`` = the tool's name (one module serves all its
plugin's tools) and the arguments as JSON on stdin, the ABI of WASM skills (docs/wasm.md).
The module sees the workspace directories of ``read`` (read-only) and ``write`` under
``/workspace/<dir>``, the variables of ``env`` that are set, and nothing else; ``timeout``
and ``memory_mb`` bound each call (``[skills] timeout`` caps the time).

:class:`PluginWatcher` reloads the tools when a plugin is installed, changed, enabled,
disabled or removed: the next turn sees the new list, calls already running finish.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openpista.plugin_dir import DirectoryPlugin, PluginManifest, ToolManifest, discover, stamp
from openpista.skills import Skill
from openpista.tools import Tool, ToolError, schema_validator
from openpista_wasm.runner import WasmSkillRunner
from openpista_wasm.sandbox import GUEST_WORKSPACE, Mount
from openpista_wasm.settings import Limits

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0


def plugin_tools(
    plugins: list[DirectoryPlugin], runner: WasmSkillRunner, workspace: Path, ceiling: float
) -> list[Tool]:
    """The tools of the enabled plugins that loaded; the others are logged, one line each."""
    tools: list[Tool] = []
    for plugin in plugins:
        if plugin.manifest is None:
            log.warning("plugin %s is not loaded: %s", plugin.name, plugin.error)
        elif plugin.enabled:
            for spec in plugin.manifest.tools:
                tools.append(_tool(plugin, plugin.manifest, spec, runner, workspace, ceiling))
    return tools


def _tool(
    plugin: DirectoryPlugin,
    manifest: PluginManifest,
    spec: ToolManifest,
    runner: WasmSkillRunner,
    workspace: Path,
    ceiling: float,
) -> Tool:
    name = manifest.tool_name(spec)
    grants = manifest.permissions
    limits = Limits(timeout=min(grants.timeout, ceiling), memory_bytes=grants.memory_mb * 2**20)
    skill = Skill(
        name=spec.name,
        description=spec.description,
        path=plugin.folder,
        mode="wasm",
        entry=plugin.module,
        parameters=spec.parameters,
    )

    async def run(**arguments: Any) -> str:
        mounts = [_mount(workspace, rel, writable=False) for rel in grants.read]
        mounts += [_mount(workspace, rel, writable=True) for rel in grants.write]
        env = {key: os.environ[key] for key in grants.env if key in os.environ}
        return await runner.run_sandboxed(skill, arguments, limits, mounts, env)

    return Tool(
        name=name,
        description=f"{spec.description} (plugin {manifest.name} {manifest.version})",
        handler=run,
        parameters=spec.parameters,
        validator=schema_validator(name, spec.parameters),
    )


def _mount(workspace: Path, relative: str, *, writable: bool) -> Mount:
    """``workspace/relative`` at ``/workspace/relative``, refused when a link leads it out
    of the workspace (the manifest was checked, the workspace may have changed since)."""
    root = workspace.resolve()
    host = (root / relative).resolve()
    if not host.is_relative_to(root):
        raise ToolError(f"the plugin's directory {relative!r} leads outside the workspace")
    if not host.is_dir():
        raise ToolError(f"the plugin's directory {relative!r} does not exist in the workspace")
    return Mount(host, f"{GUEST_WORKSPACE}/{relative}", writable)


class PluginWatcher:
    """Polls the plugins directory and swaps the tools of plugins that changed."""

    def __init__(
        self,
        root: Path,
        build: Callable[[list[DirectoryPlugin]], list[Tool]],
        update: Callable[[list[str], list[Tool]], list[str]],
        loaded: list[Tool],
    ) -> None:
        self.root = root
        self._build = build
        self._update = update
        self._names = [tool.name for tool in loaded]
        self._seen = stamp(root)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Watch in the running loop until :meth:`stop`."""
        self._task = asyncio.create_task(self._watch(), name="openpista-plugin-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def check(self) -> bool:
        """Reload if anything changed; whether it did."""
        seen = await asyncio.to_thread(stamp, self.root)
        if seen == self._seen:
            return False  # nothing read, nothing hashed
        self._seen = seen
        plugins = await asyncio.to_thread(discover, self.root)
        tools = self._build(plugins)
        for problem in self._update(self._names, tools):
            log.warning("plugin tool left out: %s", problem)
        self._names = [tool.name for tool in tools]
        log.info("directory plugins reloaded: %d tool(s)", len(tools))
        return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                await self.check()
            except Exception:  # a bad plugin folder must not stop the watching
                log.exception("directory plugins could not be reloaded")
