"""Counters of how compiled modules were obtained (kept free of wasmtime imports)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CacheStats:
    """How modules were obtained: compiled, read from the disk cache, or already in memory."""

    compiled: int = 0
    loaded_from_disk: int = 0
    reused_in_memory: int = 0
