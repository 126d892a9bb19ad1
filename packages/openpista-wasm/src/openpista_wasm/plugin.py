"""The openpista plugin module of openpista-wasm (entry point ``wasm``).

Registers the ``wasm`` skill runner. wasmtime is imported only when a WASM skill runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from openpista import hookimpl

if TYPE_CHECKING:
    from openpista import PluginContext, PluginSettings, SkillRunner


@hookimpl
def register_settings(register: Callable[[type[PluginSettings]], None]) -> None:
    from openpista_wasm.settings import WasmSettings

    register(WasmSettings)


@hookimpl
def register_skill_runners(
    register: Callable[[str, SkillRunner], None], context: PluginContext
) -> None:
    """Register the runner of ``mode: wasm`` skills, configured by ``[skills.wasm]``.

    The guests see ``config.workspace`` read-only; the runner's engine and compiled modules
    are released when the runtime closes. An invalid ``[skills.wasm]`` table raises
    :class:`openpista.ConfigError` (reported as a plugin problem).
    """
    from openpista_wasm.runner import WasmSkillRunner
    from openpista_wasm.settings import WasmSettings

    settings = WasmSettings.from_config(context.config)
    runner = WasmSkillRunner(settings, workspace=context.config.workspace)
    context.on_close(runner.close)
    register("wasm", runner)
