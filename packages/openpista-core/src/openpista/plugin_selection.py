"""Where plugins are found and which are loaded, in names only (no pluggy import).

Both :mod:`openpista.plugins` (which loads plugins) and :mod:`openpista.cli.command_index`
(which lists their commands without loading them) need these names; this module holds
them once and imports only :mod:`os`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["ENTRY_POINT_GROUP", "LOAD_PLUGINS_ENV", "selected_plugin_names"]

ENTRY_POINT_GROUP = "openpista"
"""The entry-point group plugins register under."""
LOAD_PLUGINS_ENV = "OPENPISTA_LOAD_PLUGINS"
"""The variable naming the plugins to load (comma-separated entry-point names)."""


def selected_plugin_names(environ: Mapping[str, str] | None = None) -> set[str] | None:
    """Entry-point names allowed by ``OPENPISTA_LOAD_PLUGINS``; ``None`` means all."""
    value = (os.environ if environ is None else environ).get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}
