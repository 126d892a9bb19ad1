"""The openpista plugin module of openpista-web (entry point ``web``).

Registers the ``web`` channel and the ``openpista web`` commands. The gateway serving the
adapter hands itself over (for ``/model``, ``/session``, ``/clear`` and the history shown
after a reload). Heavy imports (starlette, uvicorn) happen only when the channel is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from openpista import hookimpl

if TYPE_CHECKING:
    import click

    from openpista import PluginSettings, Settings
    from openpista.channels import ChannelAdapter, ChannelFactory
    from openpista.starter import StarterPrompt
    from openpista_web.app import MetricsMount
    from openpista_web.settings import WebSettings


def create_web_adapter(settings: WebSettings, config: Settings) -> ChannelAdapter:
    """The ``[channels.web]`` factory (options: docs/channels/web.md), handed them
    validated by core."""
    from openpista_web.adapter import WebAdapter
    from openpista_web.auth import resolve_token

    token, _ = resolve_token(settings)
    return WebAdapter(settings, token, metrics=metrics_mount(settings, config))


def metrics_mount(settings: WebSettings, config: Settings) -> MetricsMount | None:
    """``/metrics`` on the web server when ``[metrics] enabled`` and ``mount = "web"``;
    a server reachable beyond loopback must have ``[metrics] token`` (``ConfigError``)."""
    from openpista.config import ConfigError
    from openpista_web.app import MetricsMount

    metrics = config.metrics
    if not (metrics.enabled and metrics.mount == "web"):
        return None
    token = metrics.token.get_secret_value() if metrics.token else None
    if token is None and not _loopback(settings.host):
        raise ConfigError(
            f'[metrics] mount = "web" with [channels.web] host = "{settings.host}" needs '
            "[metrics] token: the web server is reachable beyond this machine"
        )
    return MetricsMount(token)


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


@hookimpl
def register_settings(register: Callable[[type[PluginSettings]], None]) -> None:
    from openpista_web.settings import WebSettings

    register(WebSettings)


@hookimpl
def register_channels(register: Callable[[str, ChannelFactory], None], config: Settings) -> None:
    register("web", create_web_adapter)


@hookimpl
def init_channel(name: str, prompt: StarterPrompt) -> dict[str, Any] | None:
    """``openpista init``: a generated token; loopback unless the user opens it."""
    if name != "web":
        return None
    import secrets

    from openpista_web.settings import WebSettings

    defaults = WebSettings()
    table: dict[str, Any] = {"token": secrets.token_urlsafe(32)}
    if prompt.expose(
        "the web chat",
        f"{defaults.host}:{defaults.port}",
        "Opened, anyone who can reach that port gets the sign-in page; the token is the only "
        "lock, and without tls_cert/tls_key it travels in plain HTTP.",
    ):
        table["host"] = "0.0.0.0"  # noqa: S104  only after the user confirmed exposing it (prompt.expose)
    prompt.note("web: `openpista web link` prints the sign-in link once the daemon runs")
    return table


@hookimpl
def register_commands(cli: click.Group) -> None:
    from openpista_web.cli import web

    cli.add_command(web)
