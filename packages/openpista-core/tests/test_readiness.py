"""Readiness: the gateway is ready once its provider has paid its start-up cost (warmed up
in the background after the channels started), and no longer while it stops."""

from __future__ import annotations

import asyncio
from pathlib import Path

from openpista.agent import Agent
from openpista.config import Settings
from openpista.gateway.gateway import Gateway
from openpista.plugins import PluginHost
from openpista.runtime import Runtime
from openpista_testing.adapters import LoopbackAdapter
from openpista_testing.providers import InstantProvider


async def test_ready_only_after_the_provider_warmed_up_and_not_while_stopping(
    tmp_path: Path,
) -> None:
    settings = Settings(database={"url": f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"})  # type: ignore[arg-type]
    runtime = await Runtime.open(settings, PluginHost.load(entry_points=False))
    warm_up = asyncio.Event()
    provider = InstantProvider(reply="answered", warm_up=warm_up)
    agent = Agent(provider, runtime.toolbox.tools, runtime.memory)
    adapter = LoopbackAdapter("r:")
    gateway = Gateway(runtime, [adapter], agent=agent)
    assert not gateway.ready
    try:
        await gateway.start()
        await asyncio.sleep(0.05)  # the warm-up runs, and waits for the provider
        assert not gateway.ready
        warm_up.set()
        await asyncio.wait_for(gateway.wait_ready(), 10)
        assert gateway.ready
        assert provider.prepared == 1  # warmed up without any message
        await adapter.say("1", "hi")
        assert (await adapter.answer("1")).text == "answered"
    finally:
        await gateway.stop(deadline=0)
        await runtime.close()
    assert not gateway.ready
