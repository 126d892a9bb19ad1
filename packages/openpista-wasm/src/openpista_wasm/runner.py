"""The ``wasm`` execution mode: run a skill's ``.wasm`` entry in-process, sandboxed by wasmtime.

ABI (docs/wasm.md): the tool-call arguments arrive as one JSON object on stdin; the guest
prints one JSON object on stdout, ``{"output": "<text>", "is_error": false}``, and exits 0.
``is_error: true`` makes the tool call fail with ``output`` as its message.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openpista.skills import Skill
from openpista.tools import CapturedText, ToolError
from openpista_wasm.settings import Limits, WasmSettings, limits_for
from openpista_wasm.stats import CacheStats

if TYPE_CHECKING:
    from openpista_wasm.sandbox import Mount, Outcome

_SHOWN_CHARS = 300
"""How much of malformed stdout an error message quotes."""
_STDERR_SHOWN_CHARS = 2_000


class WasmSkillRunner:
    """Runs ``mode: wasm`` skills with the workspace ``workspace`` mounted read-only (``None``:
    each skill sees its own folder). One wasmtime engine (and its module cache) per runner,
    created on first use; :meth:`close` releases them."""

    def __init__(
        self,
        settings: WasmSettings | None = None,
        workspace: Path | None = None,
        stop_grace: float = 5.0,
    ) -> None:
        self.settings = settings or WasmSettings()
        self.workspace = workspace
        self.stop_grace = stop_grace
        """How long past its bound a run may take before the caller stops waiting for it."""
        self._lock = threading.Lock()
        self._parts: _Engine | None = None
        self.stats = CacheStats()
        """How modules were obtained (compiled, from the disk cache, reused), over all runs."""

    # ``timeout`` belongs to the SkillRunner contract: it caps the skill's own bound.
    async def run(self, skill: Skill, arguments: dict[str, Any], timeout: float) -> str:  # noqa: ASYNC109
        """Run ``skill`` with ``arguments``; traps, limits and bad output raise ToolError."""
        if skill.entry is None or skill.entry.suffix != ".wasm":
            raise ToolError(
                f"skill {skill.name} (mode: wasm) needs a .wasm entry: add `entry: <file>.wasm` "
                "to its SKILL.md"
            )
        from openpista_wasm.sandbox import workspace_mounts

        limits = limits_for(skill, self.settings, timeout)
        mounts = workspace_mounts(self.workspace or skill.path)
        return await self.run_sandboxed(skill, arguments, limits, mounts)

    async def run_sandboxed(
        self,
        skill: Skill,
        arguments: dict[str, Any],
        limits: Limits,
        mounts: Sequence[Mount],
        env: Mapping[str, str] | None = None,
    ) -> str:
        """Run ``skill``'s module with exactly ``mounts`` and ``env`` (a directory plugin's
        tool: what its permissions grant); ``argv[0]`` is ``skill.name``."""
        stdin = json.dumps(arguments, ensure_ascii=False).encode()
        work = asyncio.to_thread(self._run_blocking, skill, stdin, limits, mounts, env)
        try:
            return await asyncio.wait_for(work, limits.timeout + self.stop_grace)
        except TimeoutError:
            # Epoch interruption cannot stop a guest blocked in a host call; stop waiting.
            raise ToolError(
                f"skill {skill.name} did not stop within {limits.timeout:g} s (blocked in a "
                "system call); its result will be ignored"
            ) from None

    def close(self) -> None:
        """Release the engine and the compiled modules once running calls end (a later run
        creates them again)."""
        with self._lock:
            parts, self._parts = self._parts, None
        if parts is not None:
            parts.retire()

    def _run_blocking(
        self,
        skill: Skill,
        stdin: bytes,
        limits: Limits,
        mounts: Sequence[Mount],
        env: Mapping[str, str] | None,
    ) -> str:
        from openpista_wasm.sandbox import execute

        assert skill.entry is not None  # noqa: S101  an invariant for mypy, not a check
        with self._lock:
            parts = self._parts or _Engine(self.settings, self.stats)
            self._parts = parts
            parts.enter()
        try:
            module = parts.cache.module(skill.entry)
            parts.ticker.acquire()
            try:
                outcome = execute(
                    parts.engine,
                    module,
                    program=skill.name,
                    stdin=stdin,
                    mounts=mounts,
                    limits=limits,
                    max_stdout_bytes=self.settings.max_stdout_bytes,
                    env=env,
                )
            finally:
                parts.ticker.release()
        finally:
            parts.leave()
        return self._result(skill, outcome, limits)

    def _result(self, skill: Skill, outcome: Outcome, limits: Limits) -> str:
        name = f"skill {skill.name}"
        stderr = CapturedText(head=outcome.stderr.decode("utf-8", "replace"))
        shown = stderr.clipped(_STDERR_SHOWN_CHARS).render().strip()
        detail = f"; stderr:\n{shown}" if shown else ""
        if outcome.start_error:
            hint = _memory_hint(outcome.start_error, limits)
            raise ToolError(f"{name} cannot start: {outcome.start_error}{hint}")
        if outcome.stdout_overflowed:
            raise ToolError(
                f"{name} was stopped: output limit exceeded (it printed more than "
                f"{self.settings.max_stdout_bytes:,} bytes on stdout; the limit is "
                "max_stdout_bytes in [skills.wasm])"
            )
        if outcome.interrupted:
            raise ToolError(
                f"{name} ran longer than its {limits.timeout:g} s time bound and was stopped "
                f"(raise `timeout` in its SKILL.md or [skills.wasm]){detail}"
            )
        near_cap = _near_cap(outcome.memory_bytes, limits)
        if outcome.exit_code is None:
            code = outcome.trap.name.lower().replace("_", " ") if outcome.trap else "trap"
            raise ToolError(
                f"{name} crashed: wasm trap ({code}): {outcome.trap_message}{near_cap}{detail}"
            )
        if outcome.exit_code != 0:
            raise ToolError(f"{name} exited with code {outcome.exit_code}{near_cap}{detail}")
        output, is_error = parse_result(name, outcome.stdout)
        clipped = CapturedText(head=output).clipped(self.settings.max_output_chars).render()
        if is_error:
            raise ToolError(clipped or f"{name} reported an error without a message")
        return clipped or "(the skill returned no output)"


def parse_result(name: str, stdout: bytes) -> tuple[str, bool]:
    """Read the guest's ``{"output": str, "is_error": bool}``; anything else is a ToolError."""
    text = stdout.decode("utf-8", "replace").strip()
    if not text:
        raise ToolError(f"{name} printed nothing; a WASM skill must print a JSON result object")
    try:
        result = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ToolError(
            f"{name} printed no valid JSON result ({exc.msg} at character {exc.pos}); "
            f"it printed: {_quote(text)}"
        ) from None
    if not isinstance(result, dict) or not isinstance(result.get("output"), str):
        raise ToolError(
            f'{name} must print an object with a string "output"; it printed: {_quote(text)}'
        )
    is_error = result.get("is_error", False)
    if not isinstance(is_error, bool):
        raise ToolError(f'{name}: "is_error" must be true or false; it printed: {_quote(text)}')
    return result["output"], is_error


class _Engine:
    """A wasmtime engine with epoch interruption, its module cache and epoch ticker."""

    def __init__(self, settings: WasmSettings, stats: CacheStats) -> None:
        import wasmtime

        from openpista_wasm.cache import ModuleCache, engine_fingerprint
        from openpista_wasm.sandbox import EpochTicker

        options = {"epoch_interruption": True}
        config = wasmtime.Config()
        config.epoch_interruption = options["epoch_interruption"]
        self.engine = wasmtime.Engine(config)
        directory = settings.resolved_cache_dir() if settings.cache else None
        self.cache = ModuleCache(self.engine, engine_fingerprint(options), directory, stats)
        self.ticker = EpochTicker(self.engine)
        self.users = 0
        self._retired = False
        self._lock = threading.Lock()

    def enter(self) -> None:
        """A run starts using this engine."""
        with self._lock:
            self.users += 1

    def leave(self) -> None:
        """A run ended; close everything if the runner was closed meanwhile."""
        with self._lock:
            self.users -= 1
            last = self._retired and self.users == 0
        if last:
            self._close()

    def retire(self) -> None:
        """Close now, or when the last running call ends."""
        with self._lock:
            self._retired = True
            idle = self.users == 0
        if idle:
            self._close()

    def _close(self) -> None:
        self.ticker.close()
        self.cache.close()
        self.engine.close()


def _near_cap(memory_bytes: int, limits: Limits) -> str:
    """A hint when the guest's memory ended close to its cap (an allocation was refused)."""
    if memory_bytes + max(limits.memory_bytes // 8, 2**20) < limits.memory_bytes:
        return ""
    return (
        f" after its memory reached {memory_bytes / 2**20:.1f} MB of its "
        f"{limits.memory_mb:g} MB cap (an allocation was refused; raise `memory_mb` in its "
        "SKILL.md or [skills.wasm])"
    )


def _memory_hint(error: str, limits: Limits) -> str:
    if "memory" not in error.lower():
        return ""
    return f" (its memory cap is {limits.memory_mb:g} MB: raise `memory_mb`)"


def _quote(text: str) -> str:
    shown = text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."
    return repr(shown)
