"""The openpista plugin module of openpista-mobile (entry point ``mobile``).

Cheap to import: aioquic and cryptography are imported only when the channel starts or a
command runs.
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
    from openpista_mobile.adapter import create_mobile_adapter

    register("mobile", create_mobile_adapter)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from openpista_mobile.cli import connect, mobile

    cli.add_command(connect)
    cli.add_command(mobile)
