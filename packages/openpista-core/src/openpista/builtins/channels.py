"""Built-in plugin: the ``cli`` channel (the terminal of ``openpista start``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from openpista import hookimpl

if TYPE_CHECKING:
    from openpista.channels import ChannelFactory
    from openpista.config import Settings
    from openpista.plugin_settings import PluginSettings


@hookimpl
def register_settings(register: Callable[[type[PluginSettings]], None]) -> None:
    from openpista.gateway.cli_adapter import CliSettings

    register(CliSettings)


@hookimpl
def register_channels(register: Callable[[str, ChannelFactory], None], config: Settings) -> None:
    """Register ``cli``; it is enabled unless ``[channels.cli] enabled = false``."""
    from openpista.gateway.cli_adapter import create_cli_adapter

    register("cli", create_cli_adapter)
