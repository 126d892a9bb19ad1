"""The openpista plugin module of openpista-telegram (entry point ``telegram``).

Cheap to import: aiogram (about two seconds of imports) is loaded only when the channel
starts, never for ``openpista --help`` or ``openpista telegram pair``.
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
    from openpista_telegram.settings import TelegramSettings

    register(TelegramSettings)


@hookimpl
def register_channels(
    register: Callable[[str, ChannelFactory], None], config: Settings, context: PluginContext
) -> None:
    from functools import partial

    from openpista_telegram.adapter import create_telegram_adapter

    register("telegram", partial(create_telegram_adapter, context=context))


@hookimpl
def init_channel(name: str, prompt: StarterPrompt) -> dict[str, Any] | None:
    """``openpista init``: the bot token (or ``TELEGRAM_BOT_TOKEN`` at run time)."""
    if name != "telegram":
        return None
    from openpista_telegram.settings import TOKEN_VARIABLE

    token = prompt.text(
        f"Telegram bot token from @BotFather (empty: read ${TOKEN_VARIABLE} at run time)",
        secret=True,
    )
    prompt.note(
        "telegram: polls the Bot API (no port to open); run `openpista telegram pair` and "
        "send the code to your bot to let yourself in"
    )
    return {"token": token} if token else {}


@hookimpl
def register_commands(cli: click.Group) -> None:
    from openpista_telegram.cli import telegram

    cli.add_command(telegram)


@hookimpl
def doctor_checks(register: Callable[[DoctorCheck], None], config: Settings) -> None:
    """``openpista doctor``: the bot token, online (``getMe``)."""
    from openpista_telegram.doctor import token_checks

    for check in token_checks(config):
        register(check)
