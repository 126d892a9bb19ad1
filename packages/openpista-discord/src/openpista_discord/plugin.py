"""The openpista plugin module of openpista-discord (entry point ``discord``).

Cheap to import: discord.py (aiohttp and its models) is loaded only when the channel
starts, never for ``openpista --help`` or ``openpista discord pair``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from openpista import hookimpl

if TYPE_CHECKING:
    import click

    from openpista import PluginContext, PluginSettings, Settings
    from openpista.channels import ChannelFactory
    from openpista.doctor import DoctorCheck
    from openpista.starter import StarterPrompt


@hookimpl
def register_settings(register: Callable[[type[PluginSettings]], None]) -> None:
    from openpista_discord.settings import DiscordSettings

    register(DiscordSettings)


@hookimpl
def register_channels(
    register: Callable[[str, ChannelFactory], None], config: Settings, context: PluginContext
) -> None:
    from functools import partial

    from openpista_discord.adapter import create_discord_adapter

    register("discord", partial(create_discord_adapter, context=context))


@hookimpl
def init_channel(name: str, prompt: StarterPrompt) -> dict[str, Any] | None:
    """``openpista init``: the bot token (or ``DISCORD_BOT_TOKEN`` at run time)."""
    if name != "discord":
        return None
    from openpista_discord.settings import TOKEN_VARIABLE

    token = prompt.text(
        f"Discord bot token from the Developer Portal (empty: read ${TOKEN_VARIABLE} at run time)",
        secret=True,
    )
    prompt.note(
        "discord: connects out to Discord's gateway (no port to open); run "
        "`openpista discord pair` and send `/pair CODE` to your bot to let yourself in"
    )
    return {"token": token} if token else {}


@hookimpl
def register_commands(cli: click.Group) -> None:
    from openpista_discord.cli import discord

    cli.add_command(discord)


@hookimpl
def doctor_checks(register: Callable[[DoctorCheck], None], config: Settings) -> None:
    """``openpista doctor``: the bot token, online (``GET /users/@me``)."""
    from openpista_discord.doctor import token_checks

    for check in token_checks(config):
        register(check)
