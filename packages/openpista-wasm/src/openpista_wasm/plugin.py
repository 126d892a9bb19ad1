"""The openpista plugin module of openpista-wasm (entry point ``wasm``).

Registers the ``wasm`` skill runner and the tools of directory plugins
(``~/.openpista/plugins``, :mod:`openpista_wasm.directory`), reloaded while the daemon runs.
wasmtime is imported only when a WASM module runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from openpista import hookimpl

if TYPE_CHECKING:
    from openpista import PluginContext, PluginSettings, Settings, SkillRunner, Tool
    from openpista_wasm.runner import WasmSkillRunner


@hookimpl
def register_settings(register: Callable[[type[PluginSettings]], None]) -> None:
    from openpista_wasm.settings import WasmSettings

    register(WasmSettings)


@hookimpl
def register_skill_runners(
    register: Callable[[str, SkillRunner], None], context: PluginContext
) -> None:
    """Register the runner of ``mode: wasm`` skills, configured by ``[skills.wasm]``."""
    register("wasm", context.shared(_runner))


@hookimpl
def register_tools(
    register: Callable[[Tool], None], config: Settings, context: PluginContext
) -> None:
    """The tools of the enabled directory plugins (``openpista plugins install``)."""
    from openpista.home import plugins_dir

    if not plugins_dir().is_dir():
        return  # no directory plugin: plugin_dir, wasmtime and jsonschema stay unloaded
    from openpista.plugin_dir import discover

    for tool in _directory_tools(context, discover()):
        register(tool)


@hookimpl
async def daemon_started(config: Settings, context: PluginContext) -> None:
    """Reload the directory plugins' tools when the plugins directory changes."""
    from openpista.home import plugins_dir
    from openpista_wasm.directory import PluginWatcher

    registry = context.tools
    if registry is None:
        return
    ours = [tool for tool in registry.tools() if tool.name.startswith("plugin.")]
    watcher = PluginWatcher(
        plugins_dir(),
        lambda plugins: _directory_tools(context, plugins),
        lambda remove, add: registry.update(remove, add),
        ours,
    )
    watcher.start()
    context.on_close(watcher.stop)


def _runner(context: PluginContext) -> WasmSkillRunner:
    """The runtime's one runner (engine, module cache) for skills and plugin tools.

    The guests of skills see ``config.workspace`` read-only; the engine and compiled modules
    are released when the runtime closes. An invalid ``[skills.wasm]`` table raises
    :class:`openpista.ConfigError` (reported as a plugin problem).
    """
    from openpista_wasm.runner import WasmSkillRunner
    from openpista_wasm.settings import WasmSettings

    settings = context.settings(WasmSettings)
    runner = WasmSkillRunner(settings, workspace=context.config.workspace)
    context.on_close(runner.close)
    return runner


def _directory_tools(context: PluginContext, plugins: list[Any]) -> list[Tool]:
    from openpista_wasm.directory import plugin_tools

    config = context.config
    return plugin_tools(plugins, context.shared(_runner), config.workspace, config.skills.timeout)
