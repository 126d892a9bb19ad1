"""``openpista discord``: pairing codes and paired users of the Discord channel."""

from __future__ import annotations

import click

from openpista.cli import pairing_commands

CHANNEL = "discord"


@click.group()
def discord() -> None:
    """The Discord channel: let people talk to your bot.

    Users in [channels.discord] allowed_users (or with a role in allowed_roles) may always
    talk to the bot; anyone else needs a one-time pairing code from `openpista discord pair`.
    """


pairing_commands(
    discord,
    CHANNEL,
    title="Discord",
    how_to_send="in a direct message (or as the pair slash command)",
)
