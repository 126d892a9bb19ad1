"""The openpista plugin module of openpista-mobile (entry point ``mobile``).

Cheap to import: aioquic and cryptography are imported only when the channel starts or a
command runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from openpista import hookimpl

if TYPE_CHECKING:
    import click

    from openpista import PluginSettings, Settings
    from openpista.channels import ChannelFactory
    from openpista.starter import StarterPrompt


@hookimpl
def register_settings(register: Callable[[type[PluginSettings]], None]) -> None:
    from openpista_mobile.settings import MobileSettings

    register(MobileSettings)


@hookimpl
def register_channels(register: Callable[[str, ChannelFactory], None], config: Settings) -> None:
    from openpista_mobile.adapter import create_mobile_adapter

    register("mobile", create_mobile_adapter)


@hookimpl
def init_channel(name: str, prompt: StarterPrompt) -> dict[str, Any] | None:
    """``openpista init``: one device with a generated token; loopback unless opened."""
    if name != "mobile":
        return None
    import secrets

    from openpista.config import ConfigError
    from openpista_mobile.settings import MobileSettings, check_device

    device = prompt.text("Name of the first mobile device", default="phone")
    try:
        check_device(device)
    except ValueError as exc:
        raise ConfigError(f"[channels.mobile]: {exc}") from None
    defaults = MobileSettings()
    table: dict[str, Any] = {"tokens": {device: secrets.token_urlsafe(32)}}
    if prompt.expose(
        "the mobile QUIC endpoint",
        f"{defaults.host}:{defaults.port}/udp",
        "Opened, phones on your network can reach it: TLS with a self-signed certificate that "
        "clients pin by fingerprint, and a token per device.",
    ):
        table["host"] = "0.0.0.0"  # noqa: S104  only after the user confirmed exposing it (prompt.expose)
    prompt.note(
        f"mobile: device {device!r} signs in with the token in the config; "
        "`openpista mobile fingerprint` prints the certificate pin"
    )
    return table


@hookimpl
def register_commands(cli: click.Group) -> None:
    from openpista_mobile.cli import connect, mobile

    cli.add_command(connect)
    cli.add_command(mobile)
