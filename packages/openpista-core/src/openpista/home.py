"""Where openpista keeps its state, found without loading the configuration.

Stdlib only: the daemon-attached CLI (:mod:`openpista.control.client`) finds the daemon's
control socket from here without importing pydantic. :mod:`openpista.config` re-exports it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

DEFAULT_HOME = "~/.openpista"


def home_dir() -> Path:
    """Where openpista keeps its state: ``$OPENPISTA_HOME`` if set, else ``~/.openpista``.

    Plugins keep their files here too (certificates, caches, downloads), each in a
    sub-directory named after the plugin. The directory is not created.
    """
    return _home().expanduser()


def in_home(name: str) -> Path:
    """``name`` inside the state directory, not expanded: ``~/.openpista/NAME`` by default
    (shown to users that way), ``$OPENPISTA_HOME/NAME`` when it is set. Read at call time, so
    a default built from it follows ``OPENPISTA_HOME``."""
    return _home() / name


def plugins_dir() -> Path:
    """``<home>/plugins``: where directory plugins live (:mod:`openpista.plugin_dir`)."""
    return home_dir() / "plugins"


def home_text() -> str:
    """:func:`home_dir` as text, without importing pathlib (``openpista --help`` uses it)."""
    return os.path.expanduser(_home_setting())


def _home() -> Path:
    from pathlib import Path

    return Path(_home_setting())


def _home_setting() -> str:
    return os.environ.get("OPENPISTA_HOME") or DEFAULT_HOME


def local_user() -> str:
    """The name of the user running openpista here (who a terminal chat's sender is):
    their login name, or ``local`` where the system has none for them (some containers)."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no passwd entry and no LOGNAME/USER
        return "local"
