"""``openpista discord``: pairing codes and paired users of the Discord channel."""

from __future__ import annotations

import click

from openpista.access import PairingBook

CHANNEL = "discord"


@click.group()
def discord() -> None:
    """The Discord channel: let people talk to your bot.

    Users in [channels.discord] allowed_users (or with a role in allowed_roles) may always
    talk to the bot; anyone else needs a one-time pairing code from `openpista discord pair`.
    """


@discord.command()
@click.option(
    "--ttl",
    type=click.IntRange(min=60, max=7 * 24 * 3600),
    default=600,
    show_default=True,
    help="Seconds the code stays valid.",
)
def pair(ttl: int) -> None:
    """Print a one-time code that lets one Discord user talk to the bot.

    The user sends `/pair CODE` to the bot (the slash command, or as a direct message).
    The code works once.
    """
    try:
        code = PairingBook(CHANNEL).new_code(ttl=ttl)
    except OSError as exc:
        raise click.ClickException(f"cannot store the pairing code: {exc}") from None
    click.echo(f"Pairing code: {code}   (valid {ttl // 60} min, once)")
    click.echo(f"Send it to the bot in a direct message:  /pair {code}")


@discord.command()
def paired() -> None:
    """List the Discord users who paired (by numeric user id)."""
    try:
        users = PairingBook(CHANNEL).paired()
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    if not users:
        click.echo("Nobody has paired yet (create a code with `openpista discord pair`).")
    for user in users:
        click.echo(user)


@discord.command()
@click.argument("user")
def unpair(user: str) -> None:
    """Forget a paired Discord USER (numeric id, as `paired` lists it)."""
    try:
        removed = PairingBook(CHANNEL).unpair(user)
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    if not removed:
        raise click.ClickException(f"{user} is not paired (see `openpista discord paired`)")
    click.echo(f"{user} can no longer talk to the bot (unless allowed_users names them).")
