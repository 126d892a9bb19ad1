"""``openpista web``: the sign-in link and the token of the web channel."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from openpista.cli import CliState, fail

if TYPE_CHECKING:
    from openpista_web.settings import WebSettings


@click.group()
def web() -> None:
    """The web channel (browser chat): sign-in link and token."""


def _settings(state: CliState) -> WebSettings:
    from openpista.config import ConfigError
    from openpista_web.settings import WebSettings

    try:
        return WebSettings.from_table(state.settings().channels.get("web", {}))
    except ConfigError as exc:
        fail(str(exc), code=2)
        raise  # unreachable: fail exits


@web.command()
@click.option("--host", help="Host name or address the phone uses to reach this computer.")
@click.pass_obj
def link(state: CliState, host: str | None) -> None:
    """Print a link that opens the chat and signs the browser in.

    The token is in the link's #fragment, which browsers never send over the network;
    open the link on your phone (or scan it from a QR code of your choice). A token is
    generated and stored in ~/.openpista/web/token when the config sets none.
    """
    from openpista_web.auth import pairing_link, resolve_token

    settings = _settings(state)
    token, source = resolve_token(settings)
    click.echo(pairing_link(settings, token, host))
    click.echo(f"(token from {source}; anyone with this link can use your agent)", err=True)
    if not settings.enabled:
        click.echo("note: [channels.web] is not enabled: set enabled = true", err=True)


@web.command()
@click.option("--rotate", is_flag=True, help="Replace the stored token (old links stop working).")
@click.pass_obj
def token(state: CliState, rotate: bool) -> None:
    """Print the web channel's token (or make a new one with --rotate)."""
    from openpista_web.auth import resolve_token, token_file

    settings = _settings(state)
    if rotate:
        if settings.token is not None:
            fail("the token is set in the config or OPENPISTA_WEB_TOKEN: change it there")
        token_file().unlink(missing_ok=True)
    value, _ = resolve_token(settings)
    click.echo(value)
    if rotate:
        click.echo("new token stored; restart `openpista start` to use it", err=True)
