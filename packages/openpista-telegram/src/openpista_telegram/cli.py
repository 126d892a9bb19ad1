"""``openpista telegram``: pairing codes and paired users of the Telegram channel."""

from __future__ import annotations

import click

from openpista.cli import pairing_commands

CHANNEL = "telegram"


@click.group()
def telegram() -> None:
    """The Telegram channel: let people talk to your bot.

    Users in [channels.telegram] allowed_users may always talk to the bot; anyone else
    needs a one-time pairing code from `openpista telegram pair`.
    """


def _start_link(code: str) -> None:
    """The t.me link that sends the code, once the daemon has learnt the bot's name."""
    from openpista_telegram.api import load_bot_info  # the config stays off --help's path

    username = load_bot_info().get("username")
    if isinstance(username, str) and username:
        click.echo(f"Or open: https://t.me/{username}?start={code}")


pairing_commands(
    telegram,
    CHANNEL,
    title="Telegram",
    how_to_send="in a private chat",
    after_code=_start_link,
)
