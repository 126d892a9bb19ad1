"""``openpista slack``: pairing codes and paired users of the Slack channel."""

from __future__ import annotations

import click

from openpista.access import PairingBook

CHANNEL = "slack"


@click.group()
def slack() -> None:
    """The Slack channel: let people talk to your Slack app.

    Users in [channels.slack] allowed_users, and members of allowed_teams, may always talk to
    the app; anyone else needs a one-time pairing code from `openpista slack pair`.
    """


@slack.command()
@click.option(
    "--ttl",
    type=click.IntRange(min=60, max=7 * 24 * 3600),
    default=600,
    show_default=True,
    help="Seconds the code stays valid.",
)
def pair(ttl: int) -> None:
    """Print a one-time code that lets one Slack user talk to the app.

    The user sends `/pair CODE` to the app in a DM, or types `/openpista pair CODE`
    anywhere. The code works once.
    """
    try:
        code = PairingBook(CHANNEL).new_code(ttl=ttl)
    except OSError as exc:
        raise click.ClickException(f"cannot store the pairing code: {exc}") from None
    click.echo(f"Pairing code: {code}   (valid {ttl // 60} min, once)")
    click.echo(f"DM it to the app:  /pair {code}   (or: /openpista pair {code})")


@slack.command()
def paired() -> None:
    """List the Slack users who paired (by user id)."""
    try:
        users = PairingBook(CHANNEL).paired()
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    if not users:
        click.echo("Nobody has paired yet (create a code with `openpista slack pair`).")
    for user in users:
        click.echo(user.upper())


@slack.command()
@click.argument("user")
def unpair(user: str) -> None:
    """Forget a paired Slack USER (user id, as `paired` lists it)."""
    try:
        removed = PairingBook(CHANNEL).unpair(user)
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    if not removed:
        raise click.ClickException(f"{user} is not paired (see `openpista slack paired`)")
    click.echo(f"{user} can no longer talk to the app (unless allowed_users names them).")
