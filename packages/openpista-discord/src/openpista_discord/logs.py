"""discord.py's log records as one line each: a traceback becomes ``(Error: message)``,
with the bot token (and what looks like a secret) redacted.

discord.py logs reconnects, failed shard connects and exceptions in event handlers with
``log.exception`` (a traceback); the daemon's log shows them as one readable line instead.
"""

from __future__ import annotations

import logging

from openpista import redacting_filter

DISCORD_LOGGERS = (
    "discord.client",
    "discord.gateway",
    "discord.http",
    "discord.shard",
    "discord.state",
    "discord.app_commands.tree",
    "discord.ui.view",
    "discord.webhook.async_",
)


class OneLine(logging.Filter):
    """Folds a record's exception into its message and drops the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None:
            record.msg = f"{record.getMessage()} ({type(error).__name__}: {error})"
            record.args = None
        record.exc_info = None
        record.exc_text = None
        return True


_FILTER = OneLine()
_installed: list[logging.Filter] = []


def install(token: str = "") -> None:
    """Fold discord.py's tracebacks and keep ``token`` out of its records (a second call
    replaces the first)."""
    remove()
    _installed[:] = [_FILTER, redacting_filter(token)]  # folded first, then redacted
    for name in DISCORD_LOGGERS:
        for installed in _installed:
            logging.getLogger(name).addFilter(installed)


def remove() -> None:
    """Undo :func:`install`."""
    for name in DISCORD_LOGGERS:
        for installed in _installed:
            logging.getLogger(name).removeFilter(installed)
    _installed.clear()
