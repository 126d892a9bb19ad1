"""Compiled-module cache: wasmtime's serialized machine code, kept in memory and on disk.

A module is compiled once per process and once per machine: the serialized form is stored
under ``<cache dir>/<key>.cwasm`` where the key is the SHA-256 of the engine fingerprint
(wasmtime version, engine options, CPU architecture) and the module's bytes, so an edited
module, another engine configuration or a wasmtime upgrade never loads stale code.
Deserializing trusts the file, so the directory is private (0700) to the daemon's user.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import threading
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path

import wasmtime

from openpista.files import write_private
from openpista.tools import ToolError
from openpista_wasm.stats import CacheStats

log = logging.getLogger(__name__)

SUFFIX = ".cwasm"


def engine_fingerprint(options: Mapping[str, object]) -> str:
    """What makes compiled code of one engine unusable by another: versions and options."""
    settings = ",".join(f"{key}={value}" for key, value in sorted(options.items()))
    return f"wasmtime={version('wasmtime')};machine={platform.machine()};{settings}"


class ModuleCache:
    """Turns ``.wasm`` files into :class:`wasmtime.Module` objects of ``engine``, compiling
    each distinct module at most once (``directory=None`` keeps the cache in memory only)."""

    def __init__(
        self,
        engine: wasmtime.Engine,
        fingerprint: str,
        directory: Path | None,
        stats: CacheStats | None = None,
    ) -> None:
        self.engine = engine
        self.fingerprint = fingerprint
        self.directory = directory
        self.stats = stats or CacheStats()
        self._modules: dict[str, wasmtime.Module] = {}
        self._lock = threading.Lock()

    def module(self, path: Path) -> wasmtime.Module:
        """The compiled module of the file at ``path``; an invalid module raises ToolError."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ToolError(f"cannot read {path.name}: {exc.strerror or exc}") from None
        key = hashlib.sha256(self.fingerprint.encode() + b"\0" + data).hexdigest()
        with self._lock:
            cached = self._modules.get(key)
            if cached is not None:
                self.stats.reused_in_memory += 1
                return cached
            module = self._load(key) or self._compile(key, path, data)
            self._modules[key] = module
            return module

    def close(self) -> None:
        """Release the compiled modules kept in memory."""
        with self._lock:
            for module in self._modules.values():
                module.close()
            self._modules.clear()

    def _file(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{key}{SUFFIX}"

    def _load(self, key: str) -> wasmtime.Module | None:
        file = self._file(key)
        if file is None or not file.is_file():
            return None
        try:
            module = wasmtime.Module.deserialize_file(self.engine, str(file))
        except wasmtime.WasmtimeError as exc:
            log.warning("ignoring unusable cached module %s: %s", file, exc)
            return None
        self.stats.loaded_from_disk += 1
        return module

    def _compile(self, key: str, path: Path, data: bytes) -> wasmtime.Module:
        try:
            module = wasmtime.Module(self.engine, data)
        except wasmtime.WasmtimeError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown error"
            raise ToolError(f"{path.name} is not a valid WebAssembly module: {reason}") from None
        self.stats.compiled += 1
        log.debug("compiled %s (%d bytes)", path, len(data))
        file = self._file(key)
        if file is not None:
            self._store(file, bytes(module.serialize()))
        return module

    def _store(self, file: Path, serialized: bytes) -> None:
        """Write atomically; a failure only costs a recompile in the next process."""
        try:
            write_private(file, serialized)
        except OSError as exc:
            log.warning("cannot write the module cache %s: %s", file, exc.strerror or exc)
