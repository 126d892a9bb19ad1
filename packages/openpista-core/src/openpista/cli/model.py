"""``openpista model``: list providers and models, test the configured one."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from openpista.cli.main import CliState, fail

if TYPE_CHECKING:
    from openpista.providers.base import ChatResult, LlmProvider
    from openpista.providers.registry import ProviderRegistry

TEST_PROMPT = "Reply with exactly one word: pong"


@click.group()
def model() -> None:
    """List the LLM providers and models, or test one."""


def _registry() -> ProviderRegistry:
    from openpista.plugins import PluginHost
    from openpista.runtime import build_providers

    return build_providers(PluginHost.load())


@model.command("list")
@click.option("-p", "--provider", metavar="NAME", help="Only this provider.")
@click.option("-r", "--remote", is_flag=True, help="Ask the provider's API for its models.")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_obj
def list_models(state: CliState, provider: str | None, remote: bool, as_json: bool) -> None:
    """List provider presets, their default and well-known models, and key status.

    The current choice ([agent] provider and model) is marked with '*'. With --remote the
    provider's API is asked for the models it serves (needs a key and the network); without
    -p, a provider that cannot be asked (no key, not reachable) is skipped with a note.
    """
    from openpista.auth.status import key_summary, stored_logins
    from openpista.config import ConfigError
    from openpista.providers.base import ProviderError

    settings = state.settings()
    registry = _registry()
    stored = stored_logins()
    try:
        names = [registry.get(provider).name] if provider else registry.names()
    except ConfigError as exc:
        fail(str(exc))
    chosen = settings.agent.provider
    current = registry.get(chosen).name if chosen in registry else None
    rows: list[dict[str, Any]] = []
    for name in names:
        preset = registry.get(name)
        configured = settings.provider_settings(name).model
        models = list(dict.fromkeys([configured or preset.default_model, *preset.models]))
        if remote:
            try:
                llm = registry.build(settings, name)
                models = asyncio.run(llm.list_models())
            except (ProviderError, ConfigError) as exc:
                if provider:
                    fail(f"{name}: {exc}")
                reason = " ".join(str(exc).split())  # one line; the others may still answer
                click.echo(f"skipped {name}: {reason}", err=True)
                continue
        rows.append(
            {
                "provider": name,
                "aliases": list(preset.aliases),
                "current": name == current,
                "default_model": configured or preset.default_model,
                "key": key_summary(preset, settings, stored),
                "models": models,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        mark = "*" if row["current"] else " "
        aliases = f" (alias: {', '.join(row['aliases'])})" if row["aliases"] else ""
        click.echo(f"{mark} {row['provider']}{aliases}  [{row['key']}]")
        for name in row["models"]:
            default = "  (default)" if name == row["default_model"] else ""
            click.echo(f"    {name}{default}")


@model.command("test")
@click.argument("model_name", metavar="[MODEL]", required=False)
@click.option(
    "-p", "--provider", metavar="NAME", help="Provider preset (default: [agent] provider)."
)
@click.pass_obj
def test_model(state: CliState, model_name: str | None, provider: str | None) -> None:
    """Send a one-word prompt to MODEL (default: the configured one) and report the result.

    Exits 0 when the model answered, 1 with the reason and the fix when it did not.
    """
    from openpista.config import ConfigError
    from openpista.providers.base import ProviderError

    settings = state.settings()
    registry = _registry()
    try:
        llm = registry.build(settings, provider, model_name)
    except (ProviderError, ConfigError) as exc:
        fail(str(exc))
    click.echo(f"Testing {llm.name} / {llm.model} ...", err=True)
    try:
        result, startup, round_trip = asyncio.run(_timed_test(llm))
    except ProviderError as exc:
        fail(str(exc))
    answer = result.text.strip().replace("\n", " ")[:200] or "(empty answer)"
    click.echo(
        f"✓ {llm.name}/{llm.model} answered in {round_trip:.2f} s "
        f"(request round trip; start-up {startup:.2f} s not counted): {answer}"
    )
    tokens = result.usage.total_tokens
    if tokens:
        click.echo(
            f"  tokens: {result.usage.prompt_tokens} in, {result.usage.completion_tokens} out"
        )
    sys.exit(0)


async def _timed_test(llm: LlmProvider) -> tuple[ChatResult, float, float]:
    """The test prompt's answer, the start-up time (``prepare``) and the round trip's time."""
    from openpista.models import Message
    from openpista.providers.base import warm_up

    started = time.perf_counter()
    await warm_up(llm)
    sent = time.perf_counter()
    result = await llm.complete([Message(role="user", content=TEST_PROMPT)], [])
    return result, sent - started, time.perf_counter() - sent
