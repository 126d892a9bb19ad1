"""The openpista plugin module of openpista-whatsapp (entry point ``whatsapp``).

Cheap to import: the adapter (starlette, uvicorn, httpx) loads only when the channel is
built or a command runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from openpista import hookimpl

if TYPE_CHECKING:
    import click

    from openpista.channels import ChannelAdapter, ChannelFactory
    from openpista.config import Settings


def _factory(table: dict[str, Any], config: Settings) -> ChannelAdapter:
    from openpista_whatsapp.adapter import create_whatsapp_adapter

    return create_whatsapp_adapter(table, config)


@hookimpl
def register_channels(register: Callable[[str, ChannelFactory], None], config: Settings) -> None:
    """The ``whatsapp`` channel (``[channels.whatsapp] enabled = true``)."""
    register("whatsapp", _factory)


@hookimpl
def register_commands(cli: click.Group) -> None:
    """``openpista whatsapp pair``: a one-time code that lets a new number in."""
    import click

    @cli.group("whatsapp")
    def whatsapp() -> None:
        """The WhatsApp channel (docs/channels/whatsapp.md)."""

    @whatsapp.command("pair")
    @click.option("--ttl", default=600.0, show_default=True, help="Seconds the code stays valid.")
    def pair(ttl: float) -> None:
        """Print a one-time pairing code: the new user sends "/pair CODE" on WhatsApp."""
        from openpista.access import PairingBook

        code = PairingBook("whatsapp").new_code(ttl)
        click.echo(f"Pairing code: {code} (valid {ttl:.0f} s, once)")
        click.echo(f'The new user sends "/pair {code}" to your WhatsApp number.')
