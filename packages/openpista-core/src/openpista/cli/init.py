"""``openpista init``: write a starter config, asking a few questions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from openpista.cli.main import CliState, fail

if TYPE_CHECKING:
    from openpista.plugins import PluginHost
    from openpista.starter import StarterPrompt


@click.command()
@click.option("--provider", metavar="NAME", help="Provider preset (asked when not given).")
@click.option("--model", metavar="MODEL", help="Model (default: the preset's default).")
@click.option("--api-key", metavar="KEY", help="API key to store (default: use the env variable).")
@click.option("--base-url", metavar="URL", help="API base URL (custom/ollama servers, proxies).")
@click.option(
    "--channel", "channels", multiple=True, metavar="NAME", help="Enable a channel (repeatable)."
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask: take the defaults and the options.")
@click.option("--force", is_flag=True, help="Overwrite an existing config file.")
@click.pass_obj
def init(
    state: CliState,
    provider: str | None,
    model: str | None,
    api_key: str | None,
    base_url: str | None,
    channels: tuple[str, ...],
    yes: bool,
    force: bool,
) -> None:
    """Write a starter config: provider, model, key, channels, and generated tokens.

    Each channel you enable asks what it needs (a bot token, a phone number id) and whether
    it may listen beyond this machine; the answer is no unless you say yes, and --yes never
    opens a port to the network. The file goes to --config / $OPENPISTA_CONFIG /
    ~/.openpista/config.toml, readable only by you (mode 0600, it may hold a key). Existing
    files are kept unless --force. Every other option keeps its default: see
    config.example.toml.
    """
    import tomli_w

    from openpista.config import default_config_path, settings_from
    from openpista.plugins import PluginHost
    from openpista.runtime import build_providers
    from openpista.starter import StarterPrompt

    path = Path(state.config_path).expanduser() if state.config_path else default_config_path()
    if path.exists() and not force:
        fail(f"{path} already exists; use --force to replace it", code=1)
    # No file yet (it is ours to write): the defaults, overlaid by the environment.
    settings = state.settings() if path.exists() else settings_from({})
    host = PluginHost.load()
    registry = build_providers(host)
    names = registry.names()
    provider = provider or ("openai" if yes else _ask_choice("LLM provider", names, "openai"))
    if provider not in registry:
        fail(f"unknown provider {provider!r}; available: {', '.join(names)}")
    preset = registry.get(provider)
    model = model or (preset.default_model if yes else click.prompt("Model", preset.default_model))
    if api_key is None and preset.requires_api_key and not yes:
        env = preset.api_key_env[0] if preset.api_key_env else "the provider's variable"
        api_key = click.prompt(
            f"API key (empty: read ${env} at run time)",
            default="",
            hide_input=True,
            show_default=False,
        )
    if base_url is None and preset.requires_base_url:
        base_url = preset.default_base_url or (
            "" if yes else click.prompt("Base URL of the server", default="")
        )
    available = sorted(
        {
            name
            for _, (name, _f) in host.collect(
                "register_channels", lambda name, _f: name, config=settings
            )
        }
        | {"cli"}
    )
    if not channels and not yes:
        others = ", ".join(c for c in available if c != "cli")
        answer = click.prompt(
            f"Channels to enable besides the terminal ({others})", default="", show_default=False
        )
        channels = tuple(part.strip() for part in answer.replace(",", " ").split())
    unknown = [c for c in channels if c not in available]
    if unknown:
        fail(f"unknown channel(s) {', '.join(unknown)}; available: {', '.join(available)}")
    prompt = StarterPrompt(interactive=not yes)
    tables = {name: _channel_table(host, name, prompt) for name in sorted(set(channels) - {"cli"})}
    document = _document(provider, model, api_key, base_url, tables)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        tomli_w.dump(document, handle)
    os.chmod(path, 0o600)
    click.echo(f"✓ wrote {path}")
    for line in prompt.notes:
        click.echo(f"  {line}")
    click.echo("  next: `openpista model test`, then `openpista start`")


def _ask_choice(label: str, options: list[str], default: str) -> str:
    return str(click.prompt(label, default=default, type=click.Choice(options)))


def _channel_table(host: PluginHost, name: str, prompt: StarterPrompt) -> dict[str, Any]:
    """``[channels.<name>]`` as the channel's plugin writes it (``enabled`` first)."""
    from openpista.config import ConfigError

    prompt.explain(f"-- [channels.{name}] --")
    try:
        table = host.pm.hook.init_channel(name=name, prompt=prompt)
    except click.exceptions.Abort:
        raise
    except ConfigError as exc:  # a wrong answer
        fail(str(exc))
    except Exception as exc:  # a broken plugin gets one clear line, not a traceback
        fail(f"the plugin of channel {name} could not prepare [channels.{name}]: {exc}")
    return {"enabled": True, **(table or {})}


def _document(
    provider: str,
    model: str,
    api_key: str | None,
    base_url: str | None,
    channels: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    section: dict[str, Any] = {"model": model}
    if api_key:
        section["api_key"] = api_key
    if base_url:
        section["base_url"] = base_url
    channel_tables: dict[str, Any] = {"cli": {"enabled": True}, **channels}
    return {
        "agent": {"provider": provider},
        "providers": {provider: section},
        "channels": channel_tables,
    }
