"""The openpista plugin module of openpista-telegram (entry point ``telegram``).

Cheap to import: aiogram (about two seconds of imports) is loaded only when the channel
starts, never for ``openpista --help`` or ``openpista telegram pair``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from openpista import hookimpl

if TYPE_CHECKING:
    import click

    from openpista.channels import ChannelFactory
    from openpista.config import Settings


@hookimpl
def register_channels(register: Callable[[str, ChannelFactory], None], config: Settings) -> None:
    from openpista_telegram.adapter import create_telegram_adapter

    register("telegram", create_telegram_adapter)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from openpista_telegram.cli import telegram

    cli.add_command(telegram)
