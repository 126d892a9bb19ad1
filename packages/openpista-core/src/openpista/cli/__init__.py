"""The ``openpista`` command line.

Plugin commands (``register_commands``) use the helpers importable from here:
:class:`CliState` (``@click.pass_obj`` gives it; ``state.settings()`` loads the
configuration or exits with a ❌ line), :func:`fail` (print ``❌ message`` and exit) and
:func:`columns` (aligned table rows), and for printing answers :class:`Console` (streamed
and whole lines that never share a line) and :func:`clip` (one short line of a long text).
:func:`pairing_commands` adds a channel's ``pair``, ``paired`` and ``unpair`` commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openpista._lazy import lazy_exports

if TYPE_CHECKING:
    from openpista.cli.console import Console, clip
    from openpista.cli.main import CliState, columns, fail
    from openpista.cli.pairing import pairing_commands

_EXPORTS = {
    "Console": "openpista.cli.console",
    "clip": "openpista.cli.console",
    "CliState": "openpista.cli.main",
    "columns": "openpista.cli.main",
    "fail": "openpista.cli.main",
    "pairing_commands": "openpista.cli.pairing",
}
__all__ = [
    "CliState",
    "Console",
    "clip",
    "columns",
    "fail",
    "pairing_commands",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)
