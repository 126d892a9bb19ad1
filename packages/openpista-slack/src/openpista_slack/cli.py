"""``openpista slack``: pairing codes and paired users of the Slack channel."""

from __future__ import annotations

import click

from openpista.cli import pairing_commands

CHANNEL = "slack"


@click.group()
def slack() -> None:
    """The Slack channel: let people talk to your Slack app.

    Users in [channels.slack] allowed_users, and members of allowed_teams, may always talk to
    the app; anyone else needs a one-time pairing code from `openpista slack pair`.
    """


pairing_commands(
    slack,
    CHANNEL,
    title="Slack",
    how_to_send="in a DM (or anywhere as /openpista pair CODE)",
    agent="the app",
    shown=str.upper,  # Slack user ids are upper case; the pairing book keeps them lowered
)
