"""Small file helpers shared by core and plugins."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import tempfile
from pathlib import Path

_UNSAFE = re.compile(r"[^\w.\-]+")


def safe_name(name: str, limit: int = 100) -> str:
    """``name`` (a file name a peer sent) as a name that stays inside its folder: no
    directories (``/`` or ``\\``), no dot file, only letters, digits, ``.``, ``_`` and ``-``,
    the last ``limit`` characters (the extension stays); ``"file"`` when nothing is left."""
    base = _UNSAFE.sub("_", Path(name.replace("\\", "/")).name).strip("._") or "file"
    return base[-limit:]


def write_private(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by the owner only (mode 0600).

    The parent directory is created (mode 0700) when missing. Readers see the old content
    or the new one, never a half-written file, and a crash leaves no stray temp file behind.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkstemp creates the file with mode 0600 in the same directory: os.replace is atomic.
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


class ConfinementError(ValueError):
    """A path names no regular file inside its directory (``..``, a symlink, a device...)."""


class AbsentFileError(ConfinementError):
    """A plain path inside the directory, with no file (or directory on the way) there."""


def confined_parts(relative: str) -> tuple[str, ...]:
    """The components of ``relative``, a plain relative path; raises :class:`ConfinementError`
    for an absolute or empty path, ``.`` or ``..`` components, NUL bytes or backslashes."""
    if not relative or "\x00" in relative or "\\" in relative:
        raise ConfinementError(f"not a plain relative path: {relative[:80]!r}")
    if relative.startswith("/"):
        raise ConfinementError(f"an absolute path is not allowed here: {relative[:80]!r}")
    parts = tuple(part for part in relative.split("/") if part)
    if not parts or any(part in (".", "..") for part in parts):
        raise ConfinementError(f"not a plain relative path: {relative[:80]!r}")
    return parts


def open_confined(root: Path, relative: str) -> int:
    """A read-only descriptor of the regular file ``root/relative``, opened one component at
    a time without following any symlink, so that it cannot be outside ``root``.

    Raises :class:`ConfinementError` for a path that leaves ``root``, goes through a symlink,
    or names something other than a regular file with a single link (hard links to files
    elsewhere are refused too), :class:`AbsentFileError` when nothing is there; the caller
    closes the descriptor.
    """
    parts = confined_parts(relative)
    nofollow = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfinementError(f"{root} cannot be opened: {exc.strerror}") from None
    part = parts[0]
    try:
        for part in parts[:-1]:
            inner = os.open(part, nofollow | os.O_DIRECTORY, dir_fd=directory)
            os.close(directory)
            directory = inner
        part = parts[-1]
        fd = os.open(part, nofollow | os.O_NONBLOCK, dir_fd=directory)
    except OSError as exc:
        symlink = _is_symlink(part, directory)
        reason = "a symlink" if symlink else exc.strerror
        error = AbsentFileError if exc.errno == errno.ENOENT and not symlink else ConfinementError
        raise error(f"{relative[:80]!r} cannot be opened ({reason})") from None
    finally:
        os.close(directory)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise ConfinementError(f"{relative[:80]!r} is not a regular file of its own")
    return fd


def _is_symlink(name: str, directory: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode)
    except OSError:
        return False


def read_confined(root: Path, relative: str, max_bytes: int) -> bytes:
    """The bytes of ``root/relative`` (see :func:`open_confined`); a file larger than
    ``max_bytes`` raises :class:`ConfinementError`."""
    fd = open_confined(root, relative)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ConfinementError(f"{relative[:80]!r} is larger than {max_bytes:,} bytes")
    return data


def turn_output_dir(session_id: str) -> Path:
    """The directory where tools write the files they send with an answer of ``session_id``:
    ``home_dir()/outbox/<digest of the session id>/``, created with mode 0700.

    The gateway delivers a ``path`` attachment only when it names a regular file in here
    (see :mod:`openpista.outbox`); nothing outside openpista may write to it.
    """
    from openpista.config import home_dir

    digest = hashlib.sha256(session_id.encode()).hexdigest()[:32]
    folder = home_dir() / "outbox" / digest
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    return folder
