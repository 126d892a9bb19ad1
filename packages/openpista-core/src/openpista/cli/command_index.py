"""The plugin commands ``openpista --help`` lists, kept between runs.

Listing a plugin's command needs its one-line help, and that needs the plugin imported,
with pluggy and its command module: about a third of ``openpista --help`` with the
workspace's plugins. The first listing writes what it found to
``~/.openpista/cache/commands.json`` (in the state directory,
:func:`openpista.home.home_dir`); later listings read it while nothing it came from has
changed: the directories of ``sys.path`` (a distribution installed or removed changes its
directory's time), each installed ``entry_points.txt``, openpista's version, and every
source file of the plugins and command modules it was read from (by modification time, so
an edited help text shows at once in an editable install); one index per
``OPENPISTA_LOAD_PLUGINS`` selection. An unreadable or stale index is
rebuilt; one that cannot be written is only not kept. Running a plugin command always
loads the plugins themselves.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import zlib
from collections.abc import Callable, Iterable

from openpista._version import __version__
from openpista.home import home_text
from openpista.plugin_selection import ENTRY_POINT_GROUP, LOAD_PLUGINS_ENV

__all__ = ["INDEX_NAME", "index_name", "plugin_rows"]

INDEX_NAME = "commands.json"
"""The index's file name inside ``<home>/cache`` with every plugin selected (see
:func:`index_name`)."""
_VERSION = 1

Rows = list[tuple[str, str]]
Loader = Callable[[], tuple[Rows, list[str], list[str] | None]]
"""Loads the plugins: their command rows ``(name, one-line help)``, the warnings to show,
and the names of the modules imported to find them (``None``: not known, do not keep)."""


def plugin_rows(load: Loader) -> tuple[Rows, list[str]]:
    """The plugin command rows and warnings: from the index while it is current, else from
    ``load()`` (and written to the index)."""
    selection = os.environ.get(LOAD_PLUGINS_ENV)
    name = (
        INDEX_NAME if selection is None else f"commands-{zlib.crc32(selection.encode()):08x}.json"
    )
    path = os.path.join(home_text(), "cache", name)
    installed = _installed(selection)
    kept = _read(path, installed)
    if kept is not None:
        return kept
    rows, warnings, modules = load()
    if modules is not None:
        from openpista.entry_points import entry_points  # on a rebuild only

        points = [p.metadata_dir for p in entry_points(ENTRY_POINT_GROUP) if p.metadata_dir]
        listed = [os.path.join(folder, "entry_points.txt") for folder in points]
        # Read again: loading may have changed a directory (its first __pycache__).
        _write(path, _installed(selection), rows, warnings, _files(modules, listed))
    return rows, warnings


def index_name(selection: str | None) -> str:
    """The index's file name for the ``OPENPISTA_LOAD_PLUGINS`` value ``selection``."""
    if selection is None:
        return INDEX_NAME
    return INDEX_NAME.replace(".json", f"-{zlib.crc32(selection.encode()):08x}.json")


def _installed(selection: str | None) -> list[object]:
    """What the index depends on besides its source files: openpista's version, the plugin
    selection, and each ``sys.path`` directory by modification time (a distribution
    installed or removed there changes it)."""
    folders = [[entry, _mtime(entry or ".")] for entry in sys.path]
    return [_VERSION, __version__, selection, sys.prefix, folders]


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _files(modules: Iterable[str], others: Iterable[str]) -> dict[str, int | None]:
    files = {name: _mtime(name) for name in others}
    for name in modules:
        source = getattr(sys.modules.get(name), "__file__", None)
        if isinstance(source, str):
            files[source] = _mtime(source)
    return files


def _read(path: str, installed: list[object]) -> tuple[Rows, list[str]] | None:
    try:
        with open(path, encoding="utf-8") as file:
            index = json.load(file)
        if not isinstance(index, dict) or index.get("installed") != installed:
            return None
        files, rows, warnings = index["files"], index["rows"], index["warnings"]
        if not isinstance(files, dict) or any(_mtime(f) != m for f, m in files.items()):
            return None
        if not all(isinstance(w, str) for w in warnings):
            return None
        checked = [(name, text) for name, text in rows if _is_text(name) and _is_text(text)]
    except (OSError, ValueError, KeyError, TypeError):  # missing, unreadable, malformed
        return None
    return (checked, list(warnings)) if len(checked) == len(rows) else None


def _is_text(value: object) -> bool:
    return isinstance(value, str) and value.isprintable()


def _write(
    path: str,
    installed: list[object],
    rows: Rows,
    warnings: list[str],
    files: dict[str, int | None],
) -> None:
    index = {"installed": installed, "files": files, "rows": rows, "warnings": warnings}
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(index, file)
        os.replace(temporary, path)
    except OSError:  # a read-only or full home: the next listing loads the plugins again
        with contextlib.suppress(OSError):
            os.unlink(temporary)
