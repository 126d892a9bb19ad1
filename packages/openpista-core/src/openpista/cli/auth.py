"""``openpista auth``: log in to providers, show or remove stored credentials."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

import click

from openpista.cli.main import CliState, columns, fail

if TYPE_CHECKING:
    from openpista.auth.credentials import Credential
    from openpista.config import Settings
    from openpista.providers.registry import ProviderRegistry


PICK_ATTEMPTS = 3


@click.group()
def auth() -> None:
    """Log in to providers, show or remove stored credentials.

    \b
    Examples:
      openpista auth login openai              (ChatGPT sign-in in the browser)
      openpista auth login openai --no-browser (paste the redirected URL)
      openpista auth login anthropic           (asks for the API key, hidden)
      echo "$KEY" | openpista auth login together --api-key-stdin
      openpista auth status --json
      openpista auth logout openai
    """


def _registry() -> ProviderRegistry:
    from openpista.plugins import PluginHost
    from openpista.runtime import build_providers

    return build_providers(PluginHost.load())


def _store() -> Any:
    from openpista.auth.credentials import CredentialStore

    return CredentialStore()


def _load(store: Any) -> dict[str, Credential]:
    from openpista.auth.credentials import AuthError

    try:
        loaded: dict[str, Credential] = store.load()
    except AuthError as exc:
        fail(str(exc), code=2)
    return loaded


@auth.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
def status(state: CliState, as_json: bool) -> None:
    """Show every provider: where its key comes from (config, stored, env, none) and expiry."""
    from openpista.auth.status import describe_key, key_status

    settings = state.settings()
    registry = _registry()
    stored = _load(_store())
    rows = [key_status(registry.get(name), settings, stored) for name in registry.names()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for line in columns([(row["provider"], describe_key(row)) for row in rows]):
        click.echo(line)


@auth.command("logout")
@click.argument("provider", required=False)
@click.pass_obj
def logout(state: CliState, provider: str | None) -> None:
    """Remove the stored credential of PROVIDER (of every provider when none is given)."""
    from openpista.auth.credentials import AuthError

    name = _resolve(provider) if provider else None
    try:
        removed = _store().remove(name)
    except AuthError as exc:
        fail(str(exc), code=2)
    if not removed:
        click.echo(f"nothing stored for {name}" if name else "no stored credentials")
        return
    click.echo(f"removed the stored credential of {', '.join(removed)}")


def _resolve(provider: str) -> str:
    from openpista.auth.providers import OAUTH_PROVIDERS
    from openpista.config import ConfigError

    if provider in OAUTH_PROVIDERS:  # a sign-in openpista knows, even without its preset
        return provider
    try:
        return _registry().get(provider).name
    except ConfigError as exc:
        fail(str(exc))
        raise  # unreachable: fail() exits


def _pick(settings: Settings) -> str:
    """Ask which provider to log in to: by number, name, alias, or part of a name."""
    from openpista.auth.status import key_status

    registry = _registry()
    stored = _load(_store())
    names = [n for n in registry.names() if registry.get(n).requires_api_key]
    click.echo("Providers:", err=True)
    for index, name in enumerate(names, 1):
        row = key_status(registry.get(name), settings, stored)
        methods = " or ".join(m.replace("_", " ") for m in row["login_methods"])
        click.echo(f"  {index}. {name:<12} ({methods}; now: {row['source']})", err=True)
    for _ in range(PICK_ATTEMPTS):
        choice = click.prompt("Provider (number, name or part of a name)", err=True).strip()
        if choice.isdigit() and 1 <= int(choice) <= len(names):
            return names[int(choice) - 1]
        if choice in registry:
            return registry.get(choice).name
        matches = [n for n in names if choice.lower() in n.lower()]
        if len(matches) == 1:
            return matches[0]
        if matches:
            click.echo(f"  several match {choice!r}: {', '.join(matches)}", err=True)
        else:
            click.echo(f"  no provider matches {choice!r}", err=True)
    fail("no provider chosen")
    raise AssertionError  # unreachable: fail() exits


def _ask_method(name: str) -> str:
    """Interactive login to a provider with both methods: OAuth sign-in or an API key."""
    answer = click.prompt(
        f"Log in to {name} with 1) sign-in in the browser (OAuth) or 2) an API key",
        type=click.Choice(["1", "2"]),
        default="1",
        err=True,
    )
    return "oauth" if answer == "1" else "api-key"


@auth.command("login")
@click.argument("provider", required=False)
@click.option("--api-key", "api_key", metavar="KEY", help="Store this API key (visible in ps!).")
@click.option("--api-key-stdin", is_flag=True, help="Read the API key from standard input.")
@click.option(
    "--method",
    type=click.Choice(["oauth", "api-key"]),
    help="Sign in with OAuth or store an API key (default: OAuth where the provider has it).",
)
@click.option(
    "--no-browser",
    is_flag=True,
    help="Print the sign-in URL and read the redirected URL (or code) from standard input.",
)
@click.option(
    "--timeout", default=300.0, show_default=True, help="Seconds to wait for the browser."
)
@click.pass_obj
def login(
    state: CliState,
    provider: str | None,
    api_key: str | None,
    api_key_stdin: bool,
    method: str | None,
    no_browser: bool,
    timeout: float,
) -> None:
    """Log in to PROVIDER (asked when not given) and store the credential (mode 0600).

    OpenAI (ChatGPT sign-in) and OpenRouter use OAuth 2.0 with PKCE in the browser; every
    provider accepts an API key. Anthropic takes an API key only: its consumer terms forbid
    Claude subscription sign-in in third-party tools.
    """
    from openpista.auth.credentials import AuthError, Credential
    from openpista.auth.providers import oauth_provider
    from openpista.auth.status import expiry_text

    settings = state.settings()
    name = _resolve(provider) if provider else _pick(settings)
    table = oauth_provider(name, settings)
    chose_nothing = method is None and api_key is None and not api_key_stdin
    if provider is None and table is not None and chose_nothing:
        method = _ask_method(name)
    use_key = api_key is not None or api_key_stdin or method == "api-key" or table is None
    if method == "oauth" and table is None:
        fail(f"{name} has no OAuth sign-in in openpista; log in with an API key instead")
    store = _store()
    _load(store)  # refuse a bad file before asking for anything
    if use_key:
        key = _read_key(name, api_key, api_key_stdin)
        credential = Credential(kind="api_key", api_key=key)
    else:
        assert table is not None  # noqa: S101  an invariant for mypy, not a check
        try:
            credential = asyncio.run(_oauth(table, no_browser, timeout))
        except AuthError as exc:
            fail(str(exc))
    try:
        store.set(name, credential)
    except AuthError as exc:
        fail(str(exc), code=2)
    expiry = expiry_text(credential)
    click.echo(
        f"✅ logged in to {name} ({credential.kind.replace('_', ' ')}"
        + (f", expires {expiry}" if expiry else "")
        + f"); stored in {store.path}"
    )


def _read_key(name: str, api_key: str | None, from_stdin: bool) -> str:
    if from_stdin:
        key = sys.stdin.readline().strip()
    elif api_key is not None:
        key = api_key.strip()
    else:
        key = click.prompt(f"{name} API key", hide_input=True, err=True).strip()
    if not key:
        fail("the API key is empty; nothing was stored")
    return key


async def _oauth(table: Any, no_browser: bool, wait_seconds: float) -> Credential:
    import httpx

    from openpista.auth.oauth import (
        DeviceCode,
        login_with_browser,
        login_with_device,
        login_with_paste,
    )

    async with httpx.AsyncClient(timeout=30) as client:
        if table.flavor == "device":

            def show_code(device: DeviceCode) -> None:
                click.echo(f"Open {device.verification_uri} and enter the code {device.user_code}")
                click.echo("Waiting for the sign-in to be approved...", err=True)

            return await login_with_device(table, show_code, client=client)
        if no_browser:

            def show(url: str) -> None:
                click.echo("Open this URL in a browser on any machine and sign in:", err=True)
                click.echo(url)
                click.echo(
                    "Then paste the address the browser was sent to (it may fail to load; "
                    "copy it from the address bar), or just the code:",
                    err=True,
                )

            return await login_with_paste(table, show, lambda: sys.stdin.readline(), client=client)

        def open_browser(url: str) -> None:
            import webbrowser

            click.echo(f"Opening the browser to sign in; if it does not open, visit:\n{url}")
            webbrowser.open(url)

        return await login_with_browser(
            table, open_browser, client=client, wait_seconds=wait_seconds
        )
