"""The openpista plugin module of openpista-whatsapp (entry point ``whatsapp``).

Cheap to import: the adapter (starlette, uvicorn, httpx) loads only when the channel is
built or a command runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from openpista import hookimpl

if TYPE_CHECKING:
    import click

    from openpista import PluginSettings, Settings
    from openpista.channels import ChannelAdapter, ChannelFactory
    from openpista.doctor import DoctorCheck
    from openpista.starter import StarterPrompt
    from openpista_whatsapp.settings import WhatsAppSettings


def _factory(settings: WhatsAppSettings, config: Settings) -> ChannelAdapter:
    from openpista_whatsapp.adapter import create_whatsapp_adapter

    return create_whatsapp_adapter(settings, config)


@hookimpl
def register_settings(register: Callable[[type[PluginSettings]], None]) -> None:
    from openpista_whatsapp.settings import WhatsAppSettings

    register(WhatsAppSettings)


@hookimpl
def register_channels(register: Callable[[str, ChannelFactory], None], config: Settings) -> None:
    """The ``whatsapp`` channel (``[channels.whatsapp] enabled = true``)."""
    register("whatsapp", _factory)


@hookimpl
def init_channel(name: str, prompt: StarterPrompt) -> dict[str, Any] | None:
    """``openpista init``: the Meta app's ids and secrets (each may come from the
    environment instead), a generated verify token, and the webhook's exposure."""
    if name != "whatsapp":
        return None
    import secrets

    from openpista_whatsapp.settings import ENV_OVERRIDES, WhatsAppSettings

    variables = {option: variable for variable, option in ENV_OVERRIDES.items()}
    questions = {
        "phone_number_id": ("WhatsApp phone number id (Meta: API setup)", False),
        "access_token": ("WhatsApp access token", True),
        "app_secret": ("Meta app secret (checks every webhook's signature)", True),
    }
    table: dict[str, Any] = {}
    for option, (question, secret) in questions.items():
        answer = prompt.text(f"{question} (empty: read ${variables[option]})", secret=secret)
        if answer:
            table[option] = answer
    table["verify_token"] = secrets.token_urlsafe(32)
    defaults = WhatsAppSettings()
    if prompt.expose(
        "the WhatsApp webhook",
        f"{defaults.webhook_host}:{defaults.webhook_port}",
        "Meta only posts to https:// URLs, so the usual set-up keeps it here behind a TLS "
        "reverse proxy or tunnel; opened, it serves plain HTTP to your whole network.",
    ):
        table["webhook_host"] = "0.0.0.0"  # noqa: S104  only after the user confirmed exposing it (prompt.expose)
    prompt.note(
        f"whatsapp: give Meta your public https://…{defaults.webhook_path} URL and the "
        "verify_token written in the config (docs/channels/whatsapp.md)"
    )
    return table


@hookimpl
def register_commands(cli: click.Group) -> None:
    """``openpista whatsapp pair``: a one-time code that lets a new number in."""
    import click

    @cli.group("whatsapp")
    def whatsapp() -> None:
        """The WhatsApp channel (docs/channels/whatsapp.md)."""

    @whatsapp.command("pair")
    @click.option("--ttl", default=600.0, show_default=True, help="Seconds the code stays valid.")
    def pair(ttl: float) -> None:
        """Print a one-time pairing code: the new user sends "/pair CODE" on WhatsApp."""
        from openpista.access import PairingBook

        code = PairingBook("whatsapp").new_code(ttl)
        click.echo(f"Pairing code: {code} (valid {ttl:.0f} s, once)")
        click.echo(f'The new user sends "/pair {code}" to your WhatsApp number.')


@hookimpl
def doctor_checks(register: Callable[[DoctorCheck], None], config: Settings) -> None:
    """``openpista doctor``: the access token, online (each phone number's Graph object)."""
    from openpista_whatsapp.doctor import token_checks

    for check in token_checks(config):
        register(check)
