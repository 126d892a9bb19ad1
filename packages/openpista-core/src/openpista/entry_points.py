"""The installed entry points of one group, found without :mod:`importlib.metadata`'s cost.

Every ``openpista`` process that loads plugins (``--help``, a single shot, the daemon) needs
only the ``openpista`` group, yet ``importlib.metadata.entry_points()`` costs about 70 ms
here: it imports the email parser and builds a distribution object for every installed
package. This reads ``*.dist-info/entry_points.txt`` (and ``*.egg-info``) in the
directories of :data:`sys.path` directly, in the file format of the packaging
specification, and keeps the first distribution of a name as importlib.metadata does. When
``sys.path`` holds something else (a zip archive) or an import hook that can list
distributions, it asks importlib.metadata instead. A distribution's name and version are
read only when asked (``openpista plugins``).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from importlib import import_module

__all__ = ["EntryPoint", "entry_points"]

_METADATA_SUFFIXES = (".dist-info", ".egg-info")
_NAME_SEPARATORS = re.compile(r"[-_.]+")
_PATH_FINDERS = frozenset({"PathFinder", "MetadataPathFinder"})
"""Finders that list the distributions of sys.path directories, as this module does."""


@dataclass(frozen=True)
class EntryPoint:
    """One entry point: ``name = value`` in ``group``; ``value`` is ``module[:attribute]``."""

    name: str
    value: str
    group: str
    metadata_dir: str | None = None
    """The distribution's ``.dist-info`` / ``.egg-info`` directory, when known."""
    known: tuple[str | None, str | None] | None = None
    """The distribution's name and version, when they were read with the entry point."""

    def load(self) -> object:
        """Import the module and return the named attribute (or the module itself)."""
        module_name, _, attribute = self.value.partition(":")
        target: object = import_module(module_name.strip())
        for part in filter(None, attribute.strip().split(".")):
            target = getattr(target, part)
        return target

    def distribution(self) -> tuple[str | None, str | None]:
        """The installing distribution's name and version, read from its metadata now."""
        if self.known is not None or self.metadata_dir is None:
            return self.known or (None, None)
        from importlib.metadata import PathDistribution
        from pathlib import Path

        dist = PathDistribution(Path(self.metadata_dir))
        return dist.name, dist.version


def entry_points(group: str) -> list[EntryPoint]:
    """The entry points of ``group`` of the distributions on :data:`sys.path`, read afresh."""
    if not _plain_path():
        return _from_importlib(group)
    found: list[EntryPoint] = []
    seen: set[str] = set()
    for entry in sys.path:
        for metadata_dir in _metadata_dirs(entry or "."):
            stem = os.path.basename(metadata_dir).rsplit(".", 1)[0].split("-", 1)[0]
            name = _NAME_SEPARATORS.sub("_", stem).lower()
            if name in seen:
                continue
            seen.add(name)
            found += _parse(metadata_dir, group)
    return found


def _plain_path() -> bool:
    """Whether every distribution is found by this module's scan: only directories (or
    missing entries) on sys.path, and no import hook that lists distributions of its own
    (the ``importlib_metadata`` backport's finder, which some libraries install, reads
    sys.path as the standard one does)."""
    hooks = (f for f in sys.meta_path if hasattr(f, "find_distributions"))
    if any(getattr(f, "__name__", type(f).__name__) not in _PATH_FINDERS for f in hooks):
        return False
    return all(not os.path.isfile(entry) for entry in sys.path if entry)


def _metadata_dirs(directory: str) -> list[str]:
    try:
        with os.scandir(directory) as entries:
            names = sorted(e.name for e in entries if e.name.endswith(_METADATA_SUFFIXES))
    except OSError:  # missing, not a directory, unreadable: nothing installed there
        return []
    return [os.path.join(directory, name) for name in names]


def _parse(metadata_dir: str, group: str) -> list[EntryPoint]:
    """The ``group`` section of ``entry_points.txt``: ``[section]`` headers, ``name = value``
    lines, ``#``/``;`` comments; a value's ``[extras]`` are dropped. Unreadable files and
    lines that are not ``name = value`` are skipped, as importlib.metadata does."""
    try:
        with open(os.path.join(metadata_dir, "entry_points.txt"), encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError):
        return []
    found = []
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif section == group and "=" in line:
            name, _, value = line.partition("=")
            value = value.split("[", 1)[0].strip()
            if name.strip() and value:
                found.append(EntryPoint(name.strip(), value, group, metadata_dir))
    return found


def _from_importlib(group: str) -> list[EntryPoint]:
    import importlib.metadata
    import logging

    found = []
    seen: set[str] = set()
    for dist in importlib.metadata.distributions():
        try:
            name = dist.metadata["Name"] or ""
            if _NAME_SEPARATORS.sub("_", name).lower() in seen:
                continue
            seen.add(_NAME_SEPARATORS.sub("_", name).lower())
            points = [p for p in dist.entry_points if p.group == group]
            known = (name, dist.version)
        except Exception as exc:  # one distribution's broken metadata hides only it
            logging.getLogger(__name__).debug("unreadable distribution metadata: %s", exc)
            continue
        found += [EntryPoint(p.name, p.value, group, known=known) for p in points]
    return found
