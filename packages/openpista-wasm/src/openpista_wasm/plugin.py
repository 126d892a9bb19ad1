"""The openpista plugin module of openpista-wasm (entry point ``wasm``).

Registers the ``wasm`` skill runner. wasmtime is imported only when a WASM skill runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from openpista import hookimpl

if TYPE_CHECKING:
    from openpista import PluginContext, SkillRunner


@hookimpl
def register_skill_runners(
    register: Callable[[str, SkillRunner], None], context: PluginContext
) -> None:
    """Register the runner of ``mode: wasm`` skills, configured by ``[skills.wasm]``.

    The guests see ``config.workspace`` read-only; the runner's engine and compiled modules
    are released when the runtime closes. An invalid ``[skills.wasm]`` table raises
    :class:`openpista.ConfigError` (reported as a plugin problem).
    """
    from openpista.config import plugin_options
    from openpista_wasm.runner import WasmSkillRunner
    from openpista_wasm.settings import WasmSettings

    config = context.config
    table = (config.skills.model_extra or {}).get("wasm")
    settings = plugin_options("skills.wasm", table, WasmSettings)
    runner = WasmSkillRunner(settings, workspace=config.workspace)
    context.on_close(runner.close)
    register("wasm", runner)
