"""One isolated run of a WASI command module: wasmtime store, WASI context, limits, capture.

The guest sees: its arguments on stdin, ``argv = [program]``, the environment variables and
the directories it is given (:class:`Mount`; a skill gets none of the first and the
workspace read-only both as ``/workspace`` and as the current directory), and nothing else
(WASI preview 1 has no sockets). Stdout and stderr are
captured in memory up to a cap by a host ``fd_write`` that shadows WASI's for them; crossing
the stdout cap stops the run inside that call. Time is bounded by epoch interruption and
memory by the store's limiter.
"""

from __future__ import annotations

import struct
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import wasmtime

from openpista_wasm.settings import Limits

GUEST_WORKSPACE = "/workspace"


@dataclass(frozen=True)
class Mount:
    """A host directory the guest sees at ``guest``, read-only unless ``writable``."""

    host: Path
    guest: str
    writable: bool = False


def workspace_mounts(workspace: Path) -> list[Mount]:
    """What a skill sees: ``workspace`` read-only as ``/workspace`` and as ``.``."""
    return [Mount(workspace, GUEST_WORKSPACE), Mount(workspace, ".")]


TICK_SECONDS = 0.01
"""Resolution of the time bound: the engine's epoch advances this often while a run is on."""
LINGER_SECONDS = 2.0
"""How long the epoch thread outlives the last run, ready for the next one."""


class EpochTicker:
    """Advances the engine epoch every :data:`TICK_SECONDS` while runs are active.

    Deadlines are counted in ticks after the current epoch, so runs of one engine may
    overlap. The thread lingers :data:`LINGER_SECONDS` after the last run (starting a thread
    per call would cost more than the call) and :meth:`close` stops it for good.
    """

    def __init__(self, engine: wasmtime.Engine) -> None:
        self.engine = engine
        self._active = 0
        self._idle_since = 0.0
        self._closed = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Make sure the epoch advances for one more run."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the epoch ticker is closed")
            self._active += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._tick, name="wasm-epoch", daemon=True)
                self._thread.start()

    def release(self) -> None:
        """One run ended."""
        with self._lock:
            self._active -= 1
            self._idle_since = time.monotonic()

    def close(self) -> None:
        """Stop the thread (before the engine is closed)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            thread.join()

    def _tick(self) -> None:
        # Ticks follow the clock, not the number of wake-ups: a late wake-up (busy machine)
        # catches up, so a deadline of N ticks is N * TICK_SECONDS of wall time.
        started = time.monotonic()
        issued = 0
        while True:
            time.sleep(TICK_SECONDS)
            with self._lock:
                idle = self._active == 0
                if self._closed or (idle and time.monotonic() - self._idle_since > LINGER_SECONDS):
                    self._thread = None
                    return
            due = int((time.monotonic() - started) / TICK_SECONDS)
            for _ in range(due - issued):
                self.engine.increment_epoch()
            issued = max(issued, due)


class OutputLimitExceeded(Exception):
    """Raised in the guest's ``fd_write`` once stdout passes its cap: the run traps at once."""


class _Capture:
    """Collects one output stream, keeping at most ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.overflowed = False
        self.seen = 0
        """Bytes the guest asked to write, kept or not."""

    @property
    def room(self) -> int:
        """How many more bytes are kept."""
        return max(self.limit - len(self.data), 0)

    def write(self, chunk: bytes | bytearray, offered: int) -> None:
        """Keep ``chunk``, the first bytes of ``offered`` ones the guest wrote."""
        self.seen += offered
        if offered > self.room:
            self.overflowed = True
        self.data += chunk[: self.room]


_WASI = "wasi_snapshot_preview1"
_MASK = 0xFFFF_FFFF  # i32 arguments arrive signed; WASI pointers and sizes are unsigned
_IOV_MAX = 1024
_EFAULT, _EINVAL = 21, 28  # WASI errno values


class _Streams:
    """WASI ``fd_write`` for stdout (1) and stderr (2) into captures; other descriptors go to
    WASI's own ``fd_write``.

    Handling the write here, on the guest's thread, is what lets a flood stop at the write
    that crosses the cap: wasmtime's custom-output callbacks run later on another thread,
    and a store's epoch deadline cannot be moved closer while it runs.
    """

    def __init__(self, wasi_write: wasmtime.Func, stdout: _Capture, stderr: _Capture) -> None:
        self.wasi_write = wasi_write
        self.stdout = stdout
        self.stderr = stderr

    def fd_write(
        self, caller: wasmtime.Caller, fd: int, iovs: int, count: int, nwritten: int
    ) -> int:
        capture = {1: self.stdout, 2: self.stderr}.get(fd)
        if capture is None:
            result: int = self.wasi_write(caller, fd, iovs, count, nwritten)
            return result
        memory = caller.get("memory")
        if not isinstance(memory, wasmtime.Memory):
            return _EFAULT
        iovs, count, nwritten = iovs & _MASK, count & _MASK, nwritten & _MASK
        if count > _IOV_MAX:
            return _EINVAL
        size = memory.data_len(caller)
        table = iovs + 8 * count
        if table > size or nwritten + 4 > size:
            return _EFAULT
        vectors = struct.unpack_from(f"<{2 * count}I", memory.read(caller, iovs, table))
        pairs = list(zip(vectors[::2], vectors[1::2], strict=True))
        if any(base + length > size for base, length in pairs):
            return _EFAULT
        for base, length in pairs:
            capture.write(memory.read(caller, base, base + min(length, capture.room)), length)
        memory.write(caller, struct.pack("<I", sum(length for _, length in pairs)), nwritten)
        if capture is self.stdout and capture.overflowed:
            raise OutputLimitExceeded
        return 0

    def define(self, linker: wasmtime.Linker) -> None:
        """Put this ``fd_write`` in place of WASI's in ``linker``."""
        i32 = wasmtime.ValType.i32()
        linker.allow_shadowing = True
        linker.define_func(
            _WASI, "fd_write", wasmtime.FuncType([i32] * 4, [i32]), self.fd_write, True
        )
        linker.allow_shadowing = False


@dataclass(frozen=True)
class Outcome:
    """What one run did. ``exit_code`` is ``None`` when it trapped or could not start."""

    stdout: bytes
    stderr: bytes
    stdout_overflowed: bool
    """Stdout passed its cap; the run was stopped at that write."""
    stdout_seen: int
    """Bytes the guest wrote on stdout, including those past the cap (not kept)."""
    exit_code: int | None = None
    trap: wasmtime.TrapCode | None = None
    trap_message: str = ""
    """Why it trapped (one line, without the backtrace)."""
    start_error: str = ""
    memory_bytes: int = 0

    @property
    def interrupted(self) -> bool:
        """The time bound stopped the run."""
        return self.trap is wasmtime.TrapCode.INTERRUPT


def execute(
    engine: wasmtime.Engine,
    module: wasmtime.Module,
    *,
    program: str,
    stdin: bytes,
    mounts: Sequence[Mount],
    limits: Limits,
    max_stdout_bytes: int,
    max_stderr_bytes: int = 65_536,
    env: Mapping[str, str] | None = None,
) -> Outcome:
    """Run ``module``'s ``_start`` once in a fresh store; blocks the calling thread.

    The caller keeps an :class:`EpochTicker` running, otherwise the time bound never fires.
    """
    stdout = _Capture(max_stdout_bytes)
    stderr = _Capture(max_stderr_bytes)
    exit_code: int | None = None
    trap: wasmtime.TrapCode | None = None
    trap_message = start_error = ""
    memory_bytes = 0
    # WASI preview 1 reads stdin from a file; the arguments are written to a private one.
    with tempfile.NamedTemporaryFile(prefix="openpista-wasm-", suffix=".json") as stdin_file:
        stdin_file.write(stdin)
        stdin_file.flush()
        store = wasmtime.Store(engine)
        linker = wasmtime.Linker(engine)
        try:
            store.set_limits(memory_size=limits.memory_bytes)
            store.set_epoch_deadline(max(1, round(limits.timeout / TICK_SECONDS)))
            wasi = wasmtime.WasiConfig()
            wasi.argv = [program]
            wasi.stdin_file = stdin_file.name
            if env:
                wasi.env = list(env.items())
            for mount in mounts:
                if mount.host.is_dir():
                    wasi.preopen_dir(str(mount.host), mount.guest, fs_mutable=mount.writable)
            store.set_wasi(wasi)
            linker.define_wasi()
            wasi_write = linker.get(store, _WASI, "fd_write")
            assert isinstance(wasi_write, wasmtime.Func)  # noqa: S101  an invariant for mypy, not a check
            _Streams(wasi_write, stdout, stderr).define(linker)
            instance: wasmtime.Instance | None = None
            try:
                instance = linker.instantiate(store, module)
                start = instance.exports(store).get("_start")
                if not isinstance(start, wasmtime.Func):
                    start_error = "the module exports no `_start` function (not a WASI command)"
                else:
                    start(store)
                    exit_code = 0
            except OutputLimitExceeded:
                # wasmtime-py keeps a host function's exception in one process-wide slot,
                # so a concurrent run may receive this run's: only stdout.overflowed counts.
                if not stdout.overflowed:
                    trap_message = "stopped by a host error wasmtime reported for another run"
            except wasmtime.ExitTrap as exc:
                exit_code = exc.code
            except wasmtime.Trap as exc:
                trap = exc.trap_code
                trap_message = _trap_reason(exc.message)
            except wasmtime.WasmtimeError as exc:
                start_error = _first_line(str(exc))
            if instance is not None:
                memory = instance.exports(store).get("memory")
                if isinstance(memory, wasmtime.Memory):
                    memory_bytes = memory.data_len(store)
        finally:
            # Explicit closes, so that nothing of the run outlives it.
            linker.close()
            store.close()
    return Outcome(
        stdout=bytes(stdout.data),
        stderr=bytes(stderr.data),
        stdout_overflowed=stdout.overflowed,
        stdout_seen=stdout.seen,
        exit_code=exit_code,
        trap=trap,
        trap_message=trap_message,
        start_error=start_error,
        memory_bytes=memory_bytes,
    )


def _trap_reason(message: str) -> str:
    """The cause of a trap without its backtrace: wasmtime's ``wasm trap: ...`` line."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if "wasm trap: " in line:
            return line.split("wasm trap: ", 1)[1]
    return lines[-1] if lines else "no message"


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"
