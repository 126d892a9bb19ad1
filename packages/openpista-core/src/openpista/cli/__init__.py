"""The ``openpista`` command line.

Plugin commands (``register_commands``) use the helpers importable from here:
:class:`CliState` (``@click.pass_obj`` gives it; ``state.settings()`` loads the
configuration or exits with a ❌ line), :func:`fail` (print ``❌ message`` and exit) and
:func:`columns` (aligned table rows), and for printing answers :class:`Console` (streamed
and whole lines that never share a line) and :func:`clip` (one short line of a long text).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openpista._lazy import lazy_exports

if TYPE_CHECKING:
    from openpista.cli.console import Console, clip
    from openpista.cli.main import CliState, columns, fail

_EXPORTS = {
    "Console": "openpista.cli.console",
    "clip": "openpista.cli.console",
    "CliState": "openpista.cli.main",
    "columns": "openpista.cli.main",
    "fail": "openpista.cli.main",
}
__all__ = [
    "CliState",
    "Console",
    "clip",
    "columns",
    "fail",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)
