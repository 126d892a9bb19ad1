"""``openpista <channel> pair | paired | unpair``: the pairing commands every remote channel
offers, built once (:func:`pairing_commands`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from openpista.access import PairingBook

MAX_TTL = 7 * 24 * 3600


def pairing_commands(
    group: click.Group,
    channel: str,
    *,
    title: str,
    how_to_send: str,
    allowed: str = "allowed_users",
    agent: str = "the bot",
    after_code: Callable[[str], None] | None = None,
    shown: Callable[[str], str] = str,
) -> click.Group:
    """Add ``pair``, ``paired`` and ``unpair`` to ``group`` for the channel ``channel``
    (``[channels.<channel>]``); returns ``group``.

    ``title`` names the service in help and output (``"Telegram"``), ``how_to_send`` tells
    the user how to send the code (``"in a private chat"``), ``allowed`` is the option that
    lets people in without pairing, ``agent`` what users talk to (``"the app"``),
    ``after_code(code)`` may print more (a link), and ``shown(user)`` is how ``paired``
    writes a stored (lower-case) user id.
    """

    def book() -> PairingBook:
        from openpista.access import PairingBook  # hashing and JSON: off `openpista --help`

        return PairingBook(channel)

    @group.command()
    @click.option(
        "--ttl",
        type=click.IntRange(min=60, max=MAX_TTL),
        default=600,
        show_default=True,
        help="Seconds the code stays valid.",
    )
    def pair(ttl: int) -> None:
        try:
            code = book().new_code(ttl=ttl)
        except OSError as exc:
            raise click.ClickException(f"cannot store the pairing code: {exc}") from None
        click.echo(f"Pairing code: {code}   (valid {ttl // 60} min, once)")
        click.echo(f"Send it to {agent} {how_to_send}:  /pair {code}")
        if after_code is not None:
            after_code(code)

    pair.help = (
        f"Print a one-time code that lets one {title} user talk to {agent}.\n\n"
        f"The user sends `/pair CODE` to {agent} {how_to_send}. The code works once."
    )

    @group.command(help=f"List the {title} users who paired (by user id).")
    def paired() -> None:
        try:
            users = book().paired()
        except OSError as exc:
            raise click.ClickException(str(exc)) from None
        if not users:
            click.echo(f"Nobody has paired yet (create a code with `openpista {channel} pair`).")
        for user in users:
            click.echo(shown(user))

    @group.command(help=f"Forget a paired {title} USER (as `paired` lists it).")
    @click.argument("user")
    def unpair(user: str) -> None:
        try:
            removed = book().unpair(user)
        except OSError as exc:
            raise click.ClickException(str(exc)) from None
        if not removed:
            raise click.ClickException(f"{user} is not paired (see `openpista {channel} paired`)")
        click.echo(f"{user} can no longer talk to {agent} (unless {allowed} names them).")

    return group
