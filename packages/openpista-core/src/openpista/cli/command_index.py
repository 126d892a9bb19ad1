"""The plugin commands ``openpista --help`` lists, kept between runs.

Listing a plugin's command needs its one-line help, and that needs the plugin imported,
with pluggy and its command module: about a third of ``openpista --help`` with the
workspace's plugins. The first listing writes what it found to
``~/.openpista/cache/commands.json`` (in the state directory,
:func:`openpista.home.home_dir`); later listings read it while nothing it came from has
changed: the installed ``openpista`` entry points (each ``entry_points.txt`` by
modification time), ``OPENPISTA_LOAD_PLUGINS``, openpista's version, and every source
file of the plugins and command modules it was read from (by modification time, so an
edited help text shows at once in an editable install). An unreadable or stale index is
rebuilt; one that cannot be written is only not kept. Running a plugin command always
loads the plugins themselves.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable

from openpista._version import __version__
from openpista.entry_points import entry_points
from openpista.home import home_text

__all__ = ["INDEX_NAME", "plugin_rows"]

INDEX_NAME = "commands.json"
"""The index's file name inside ``<home>/cache``."""
_VERSION = 1
_GROUP = "openpista"  # openpista.plugins.ENTRY_POINT_GROUP, without importing pluggy
_SELECTION = "OPENPISTA_LOAD_PLUGINS"  # openpista.plugins.LOAD_PLUGINS_ENV

Rows = list[tuple[str, str]]
Loader = Callable[[], tuple[Rows, list[str], list[str] | None]]
"""Loads the plugins: their command rows ``(name, one-line help)``, the warnings to show,
and the names of the modules imported to find them (``None``: not known, do not keep)."""


def plugin_rows(load: Loader) -> tuple[Rows, list[str]]:
    """The plugin command rows and warnings: from the index while it is current, else from
    ``load()`` (and written to the index)."""
    path = os.path.join(home_text(), "cache", INDEX_NAME)
    installed = _installed()
    kept = _read(path, installed)
    if kept is not None:
        return kept
    rows, warnings, modules = load()
    if modules is not None:
        _write(path, installed, rows, warnings, _files(modules))
    return rows, warnings


def _installed() -> list[object]:
    """What the index depends on besides its source files."""
    points = [
        [p.name, p.value, _mtime(os.path.join(p.metadata_dir, "entry_points.txt"))]
        if p.metadata_dir
        else [p.name, p.value, None]
        for p in entry_points(_GROUP)
    ]
    return [_VERSION, __version__, os.environ.get(_SELECTION), sys.prefix, points]


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _files(modules: Iterable[str]) -> dict[str, int | None]:
    files = {}
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
