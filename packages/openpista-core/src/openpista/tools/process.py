"""Run a child process safely: bounded output, a scrubbed environment, and nothing left
behind on timeout, on cancel, or when openpista itself is killed.

Shared by the ``system.run`` tool and the subprocess skill runner; plugins that start
programs for tools use :func:`tool_environment` too. The child starts in a new session (its
own process group), so that a timeout or the cancellation of the awaiting task kills
everything it spawned (``sleep 1000 &`` included), not just the direct child.

**Parent death.** ``kill -9`` of openpista runs no cleanup code, and the kernel's
parent-death signal only reaches a direct child. So every child starts as a tiny Python
prologue that forks a *lifeline* watcher into the new group and then execs the program
(same PID, same exit status). The watcher blocks reading a pipe whose only writer
is openpista: when the run ends normally openpista writes ``done`` and the watcher exits;
when openpista dies the kernel closes the pipe, the watcher reads end-of-file and SIGKILLs
the whole group, grandchildren included. Programs that leave the group on purpose
(``setsid``) are not followed.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import errno
import os
import shutil
import signal
import sys
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_MAX_CHARS = 100_000
"""Characters kept per stream unless the caller asks otherwise."""

_CHUNK = 64 * 1024
_DRAIN_SECONDS = 1.0
"""How long to wait for the pipes to close once the group is dead (escapees may hold them)."""

SAFE_ENVIRONMENT = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "COLORTERM",
        "TZ", "TMPDIR", "DISPLAY", "XAUTHORITY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR",
        "XDG_SESSION_TYPE", "DBUS_SESSION_BUS_ADDRESS",
    }
)  # fmt: skip
"""Variables a tool's child process inherits from openpista (besides ``LC_*``); every other
one (provider keys, bot tokens, app secrets) stays out unless passed through explicitly."""

# The start of every child, run by this Python without site-packages (``-I -S``): argv[1] is
# the lifeline's fd, the rest the program. The forked watcher keeps no stdio open (it would
# hold the output pipes); the program gets neither the fd nor Python's ignored signals.
_PROLOGUE = """\
import os, signal, sys
fd = int(sys.argv[1])
if os.fork() == 0:
    null = os.open(os.devnull, os.O_RDWR)
    for std in (0, 1, 2):
        os.dup2(null, std)
    said = b""
    while len(said) < 16 and (chunk := os.read(fd, 16)):
        said += chunk
    if said != b"done":
        os.killpg(0, signal.SIGKILL)
    os._exit(0)
os.close(fd)
for number in (signal.SIGPIPE, signal.SIGXFSZ):
    signal.signal(number, signal.SIG_DFL)
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as exc:
    sys.stderr.write(f"{sys.argv[2]}: {exc.strerror}\\n")
    os._exit(127)
"""
_DONE = b"done"


def tool_environment(
    passthrough: Iterable[str] = (), *, source: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment for a program a tool or skill starts: the :data:`SAFE_ENVIRONMENT`
    variables and ``LC_*`` of ``source`` (default: ``os.environ``), plus the variables named
    in ``passthrough`` (``[tools] env_passthrough``) that are set there."""
    source = os.environ if source is None else source
    wanted = set(passthrough)
    return {
        name: value
        for name, value in source.items()
        if name in SAFE_ENVIRONMENT or name.startswith("LC_") or name in wanted
    }


@dataclass(frozen=True)
class CapturedText:
    """The output of one stream, with its middle dropped when it was too long.

    ``head`` and ``tail`` are the kept beginning and end; ``dropped`` counts the characters
    removed between them (0 when the whole output is kept).
    """

    head: str = ""
    tail: str = ""
    dropped: int = 0

    @property
    def kept(self) -> int:
        """Number of characters kept (``head`` plus ``tail``)."""
        return len(self.head) + len(self.tail)

    @property
    def is_empty(self) -> bool:
        """Whether the stream produced no output at all."""
        return self.kept == 0 and self.dropped == 0

    def clipped(self, limit: int) -> CapturedText:
        """The same output with at most ``limit`` characters kept, cut in the middle."""
        if self.kept <= limit:
            return self
        limit = max(limit, 0)
        # Split the budget evenly, giving a short side's unused share to the other side.
        head_n = min(len(self.head), limit - limit // 2)
        tail_n = min(len(self.tail), limit - head_n)
        head_n = min(len(self.head), limit - tail_n)
        tail = self.tail[len(self.tail) - tail_n :] if tail_n else ""
        return CapturedText(
            head=self.head[:head_n],
            tail=tail,
            dropped=self.dropped + (self.kept - head_n - tail_n),
        )

    def render(self) -> str:
        """The kept text, with a marker saying how much was dropped where it was cut."""
        if not self.dropped:
            return self.head + self.tail
        marker = f"[... {self.dropped:,} characters truncated ...]"
        head = self.head if not self.head or self.head.endswith("\n") else self.head + "\n"
        return f"{head}{marker}\n{self.tail}"


@dataclass(frozen=True)
class ProcessResult:
    """What a finished (or killed) process left: exit code, output and whether it timed out.

    ``exit_code`` is negative when the process died from a signal (``-9`` for SIGKILL).
    """

    exit_code: int | None
    stdout: CapturedText
    stderr: CapturedText
    timed_out: bool = False


class StreamCapture:
    """Decodes a byte stream incrementally, keeping only its first and last characters.

    Decoding as it arrives (``errors="replace"``) counts dropped *characters* exactly,
    while memory stays bounded by ``max_chars`` whatever the process prints.
    """

    def __init__(self, max_chars: int) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._head_limit = max_chars - max_chars // 2
        self._tail_limit = max_chars // 2
        self._head: list[str] = []
        self._head_len = 0
        self._tail: deque[str] = deque()
        self._tail_len = 0
        self._dropped = 0

    def feed(self, data: bytes, *, final: bool = False) -> None:
        text = self._decoder.decode(data, final)
        room = self._head_limit - self._head_len
        if room > 0 and text:
            self._head.append(text[:room])
            self._head_len += min(room, len(text))
            text = text[room:]
        if not text:
            return
        self._tail.append(text)
        self._tail_len += len(text)
        excess = self._tail_len - self._tail_limit
        while excess > 0:
            first = self._tail[0]
            cut = min(excess, len(first))
            if cut == len(first):
                self._tail.popleft()
            else:
                self._tail[0] = first[cut:]
            self._tail_len -= cut
            self._dropped += cut
            excess -= cut

    def result(self) -> CapturedText:
        self.feed(b"", final=True)
        return CapturedText("".join(self._head), "".join(self._tail), self._dropped)


async def _pump(stream: asyncio.StreamReader | None, capture: StreamCapture) -> None:
    if stream is None:
        return
    while chunk := await stream.read(_CHUNK):
        capture.feed(chunk)


async def _feed_stdin(writer: asyncio.StreamWriter | None, data: bytes) -> None:
    if writer is None:
        return
    # The child may exit without reading its input; that is its business, not an error.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        writer.write(data)
        await writer.drain()
    writer.close()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        await writer.wait_closed()


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the group; ``False`` when no process of the group is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        # A member changed its credentials (setuid); nothing more we are allowed to do.
        return False
    return True


async def _kill_group(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the whole group, then SIGKILL whatever is still there after ``grace``."""
    pgid = process.pid  # start_new_session makes the child the leader of its own group
    if not _signal_group(pgid, signal.SIGTERM):
        return
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        # Group members other than our child cannot be awaited (and exited ones may linger
        # as zombies until their new parent reaps them): poll, bounded by the grace period.
        while loop.time() < deadline and _signal_group(pgid, 0):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    finally:
        # Runs even if we are cancelled again while waiting: never leave a live group.
        _signal_group(pgid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        await process.wait()


async def _settle(tasks: list[asyncio.Task[Any]], wait: float) -> None:
    """Let the I/O tasks finish for up to ``wait`` seconds, then cancel the rest."""
    try:
        if wait > 0:
            await asyncio.wait(tasks, timeout=wait)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _check_program(program: str, env: Mapping[str, str], cwd: Path | str | None) -> None:
    """Raise what ``exec`` would raise for ``program`` (the prologue runs it, not us)."""
    if "/" not in program:
        if shutil.which(program, path=env.get("PATH", os.defpath)) is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        return
    path = Path(cwd or ".", program)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
    if path.is_dir() or not os.access(path, os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), program)


def _release(lifeline: int) -> None:
    """Tell the watcher the run is over (it exits without killing), and close the pipe."""
    with contextlib.suppress(OSError):  # the watcher died with the group: nobody listens
        os.write(lifeline, _DONE)
    os.close(lifeline)


async def run_process(
    argv: Sequence[str],
    *,
    stdin: bytes | None = None,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    # A parameter, not asyncio.timeout() around the call: on timeout the caller still
    # gets the partial output and the timed_out flag (cancelling only kills the group).
    timeout: float | None = None,  # noqa: ASYNC109
    max_chars: int = DEFAULT_MAX_CHARS,
    kill_grace: float = 2.0,
) -> ProcessResult:
    """Run ``argv`` and collect its exit code and output.

    ``stdin`` is written to the child's standard input (``/dev/null`` when ``None``).
    At most ``max_chars`` characters are kept per stream (the middle of a longer output is
    dropped and counted). After ``timeout`` seconds, or when the awaiting task is cancelled,
    the child's whole process group gets SIGTERM and, after ``kill_grace`` seconds, SIGKILL.
    Output is read concurrently, so a child printing megabytes never blocks on a full pipe.
    ``env`` is the child's whole environment (default: :func:`tool_environment`). When
    openpista dies, the group is killed too (see the module documentation).

    Raises :class:`OSError` when the program cannot be started (not found, not executable).
    """
    environment = dict(env) if env is not None else tool_environment()
    _check_program(argv[0], environment, cwd)
    watcher_end, lifeline = os.pipe()
    try:
        process = await _start(argv, stdin, cwd, environment, watcher_end, kill_grace)
    except BaseException:
        os.close(lifeline)
        raise
    try:
        return await _supervise(process, stdin, timeout, max_chars, kill_grace)
    finally:
        _release(lifeline)


async def _start(
    argv: Sequence[str],
    stdin: bytes | None,
    cwd: Path | str | None,
    env: dict[str, str],
    watcher_end: int,
    kill_grace: float,
) -> asyncio.subprocess.Process:
    """Start ``argv`` under the lifeline prologue; closes our copy of ``watcher_end``."""
    creation = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-S",
            "-c",
            _PROLOGUE,
            str(watcher_end),
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=env,
            pass_fds=(watcher_end,),
            start_new_session=True,
        )
    )
    creation.add_done_callback(lambda _: os.close(watcher_end))
    try:
        return await asyncio.shield(creation)
    except asyncio.CancelledError:
        # The child runs before creation returns (and may already have spawned others);
        # let creation finish so that its whole group can be killed, not just the child.
        with contextlib.suppress(OSError):
            await _kill_group(await creation, kill_grace)
        raise


async def _supervise(
    process: asyncio.subprocess.Process,
    stdin: bytes | None,
    timeout: float | None,  # noqa: ASYNC109
    max_chars: int,
    kill_grace: float,
) -> ProcessResult:
    """Collect the output and exit code of ``process``; kill its group on timeout/cancel."""
    out, err = StreamCapture(max_chars), StreamCapture(max_chars)
    io_tasks = [
        asyncio.create_task(_pump(process.stdout, out)),
        asyncio.create_task(_pump(process.stderr, err)),
    ]
    if stdin is not None:
        io_tasks.append(asyncio.create_task(_feed_stdin(process.stdin, stdin)))
    exit_task = asyncio.create_task(process.wait())
    timed_out = False
    finished = False
    try:
        _, pending = await asyncio.wait([*io_tasks, exit_task], timeout=timeout)
        timed_out = bool(pending)
        finished = True
    finally:
        try:
            if not finished or timed_out:
                await _kill_group(process, kill_grace)
        finally:
            # After a kill the pipes still hold what was printed before it: read that,
            # briefly (a process that escaped the group could keep them open forever).
            await _settle([*io_tasks, exit_task], _DRAIN_SECONDS if finished else 0)
    return ProcessResult(
        exit_code=process.returncode,
        stdout=out.result(),
        stderr=err.result(),
        timed_out=timed_out,
    )
