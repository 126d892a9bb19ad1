"""The openpista plugin module of openpista-slack (entry point ``slack``).

Cheap to import: slack-bolt and slack_sdk are loaded only when the channel starts, never for
``openpista --help`` or ``openpista slack pair``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from openpista import hookimpl

if TYPE_CHECKING:
    import click

    from openpista import PluginSettings, Settings
    from openpista.channels import ChannelFactory
    from openpista.doctor import DoctorCheck
    from openpista.starter import StarterPrompt


@hookimpl
def register_settings(register: Callable[[type[PluginSettings]], None]) -> None:
    from openpista_slack.settings import SlackSettings

    register(SlackSettings)


@hookimpl
def register_channels(register: Callable[[str, ChannelFactory], None], config: Settings) -> None:
    from openpista_slack.adapter import create_slack_adapter

    register("slack", create_slack_adapter)


@hookimpl
def init_channel(name: str, prompt: StarterPrompt) -> dict[str, Any] | None:
    """``openpista init``: the two tokens of Socket Mode (or their variables at run time)."""
    if name != "slack":
        return None
    from openpista_slack.settings import APP_TOKEN_VARIABLE, BOT_TOKEN_VARIABLE

    table: dict[str, Any] = {"mode": "socket"}
    bot = prompt.text(
        f"Slack Bot User OAuth Token, xoxb-... (empty: read ${BOT_TOKEN_VARIABLE} at run time)",
        secret=True,
    )
    app = prompt.text(
        f"Slack App-Level Token, xapp-... (empty: read ${APP_TOKEN_VARIABLE} at run time)",
        secret=True,
    )
    if bot:
        table["bot_token"] = bot
    if app:
        table["app_token"] = app
    prompt.note(
        "slack: Socket Mode (no port to open); create the app from the manifest in "
        "docs/channels/slack.md, then run `openpista slack pair` and DM the bot /pair CODE"
    )
    return table


@hookimpl
def register_commands(cli: click.Group) -> None:
    from openpista_slack.cli import slack

    cli.add_command(slack)


@hookimpl
def doctor_checks(register: Callable[[DoctorCheck], None], config: Settings) -> None:
    """``openpista doctor``: the tokens, online (``auth.test``, ``apps.connections.open``)."""
    from openpista_slack.doctor import token_checks

    for check in token_checks(config):
        register(check)
