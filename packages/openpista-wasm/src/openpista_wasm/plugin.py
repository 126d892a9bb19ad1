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
def register_skill_runners(register: Callable[[str, SkillRunner], None]) -> None:
    """Register the runner of ``mode: wasm`` skills."""
    from openpista_wasm.runner import WasmSkillRunner

    runner = WasmSkillRunner()
    _runners.append(runner)
    register("wasm", runner)


@hookimpl
async def runtime_closing(config: Settings) -> None:
    """Release the wasmtime engines and compiled modules of the runners made here."""
    while _runners:
        _runners.pop().close()
