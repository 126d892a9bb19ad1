"""The openpista plugin module of openpista-wasm (entry point ``wasm``).

Registers the ``wasm`` skill runner. wasmtime is imported only when a WASM skill runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from openpista.hookspecs import hookimpl

if TYPE_CHECKING:
    from openpista.config import Settings
    from openpista.skills.base import SkillRunner
    from openpista_wasm.runner import WasmSkillRunner

_runners: list[WasmSkillRunner] = []


@hookimpl
def register_skill_runners(register: Callable[[str, SkillRunner], None], config: Settings) -> None:
    """Register the runner of ``mode: wasm`` skills, configured by ``[skills.wasm]``.

    The guests see ``config.workspace`` read-only. An invalid ``[skills.wasm]`` table raises
    :class:`openpista.config.ConfigError` (reported as a plugin problem).
    """
    from openpista.config import plugin_options
    from openpista_wasm.runner import WasmSkillRunner
    from openpista_wasm.settings import WasmSettings

    table = (config.skills.model_extra or {}).get("wasm")
    settings = plugin_options("skills.wasm", table, WasmSettings)
    runner = WasmSkillRunner(settings, workspace=config.workspace)
    _runners.append(runner)
    register("wasm", runner)


@hookimpl
async def runtime_closing(config: Settings) -> None:
    """Release the wasmtime engines and compiled modules of the runners made here."""
    while _runners:
        _runners.pop().close()
