"""Tool names on the wire.

Providers accept only ``[A-Za-z0-9_-]{1,64}`` as function names, so internal names such as
``system.run`` travel as ``system_run``. The registry rejects two tools whose wire names
collide, which makes the mapping back unambiguous.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
WIRE_NAME_MAX = 64


def wire_name(name: str) -> str:
    """The provider-safe form of an internal tool name (``system.run`` -> ``system_run``)."""
    return _UNSAFE.sub("_", name)[:WIRE_NAME_MAX]
