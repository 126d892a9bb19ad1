"""``openpista telegram``: pairing codes and paired users of the Telegram channel."""

from __future__ import annotations

import click

from openpista.access import PairingBook

CHANNEL = "telegram"


@click.group()
def telegram() -> None:
    """The Telegram channel: let people talk to your bot.

    Users in [channels.telegram] allowed_users may always talk to the bot; anyone else
    needs a one-time pairing code from `openpista telegram pair`.
    """


@telegram.command()
@click.option(
    "--ttl",
    type=click.IntRange(min=60, max=7 * 24 * 3600),
    default=600,
    show_default=True,
    help="Seconds the code stays valid.",
)
def pair(ttl: int) -> None:
    """Print a one-time code that lets one Telegram user talk to the bot.

    The user sends `/pair CODE` to the bot in a private chat (or opens the t.me link,
    shown once the daemon has connected to Telegram). The code works once.
    """
    try:
        code = PairingBook(CHANNEL).new_code(ttl=ttl)
    except OSError as exc:
        raise click.ClickException(f"cannot store the pairing code: {exc}") from None
    minutes = ttl // 60
    click.echo(f"Pairing code: {code}   (valid {minutes} min, once)")
    click.echo(f"Send it to the bot in a private chat:  /pair {code}")
    from openpista_telegram.api import load_bot_info  # the config stays off --help's path

    username = load_bot_info().get("username")
    if isinstance(username, str) and username:
        click.echo(f"Or open: https://t.me/{username}?start={code}")


@telegram.command()
def paired() -> None:
    """List the Telegram users who paired (by numeric user id)."""
    try:
        users = PairingBook(CHANNEL).paired()
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    if not users:
        click.echo("Nobody has paired yet (create a code with `openpista telegram pair`).")
    for user in users:
        click.echo(user)


@telegram.command()
@click.argument("user")
def unpair(user: str) -> None:
    """Forget a paired Telegram USER (numeric id, as `paired` lists it)."""
    try:
        removed = PairingBook(CHANNEL).unpair(user)
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    if not removed:
        raise click.ClickException(f"{user} is not paired (see `openpista telegram paired`)")
    click.echo(f"{user} can no longer talk to the bot (unless allowed_users names them).")
