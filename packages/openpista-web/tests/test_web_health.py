"""``/api/health`` reports readiness: 503 while the provider warms up, 200 once a message is
answered without a start-up wait, 503 again while the daemon stops. A real gateway, a real
uvicorn on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from openpista.agent import Agent
from openpista.config import Settings
from openpista.gateway.gateway import Gateway
from openpista.models import ChannelEvent
from openpista.plugins import PluginHost
from openpista.runtime import Runtime
from openpista.tools.registry import tool
from openpista_testing.providers import InstantProvider
from openpista_web.adapter import WebAdapter
from openpista_web.settings import WebSettings

TOKEN = "health-token-7Gq2"


async def test_health_is_503_until_the_provider_warmed_up(tmp_path: Path) -> None:
    settings = Settings(database={"url": f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"})  # type: ignore[arg-type]
    runtime = await Runtime.open(settings, PluginHost.load(entry_points=False))
    warm_up, running, release = asyncio.Event(), asyncio.Event(), asyncio.Event()

    @tool("test.hold")
    async def hold() -> str:
        """Runs until the test releases it."""
        running.set()
        await release.wait()
        return "released"

    runtime.toolbox.tools.register(hold)
    provider = InstantProvider(rounds=1, tool="test.hold", warm_up=warm_up)
    agent = Agent(provider, runtime.toolbox.tools, runtime.memory)
    web = WebAdapter(
        WebSettings.from_table({"port": 0}, environ={}), TOKEN, upload_dir=tmp_path / "up"
    )
    gateway = Gateway(runtime, [web], agent=agent)
    try:
        await gateway.start()
        url = f"http://127.0.0.1:{web.port}/api/health"
        async with httpx.AsyncClient() as http:
            warming = await http.get(url)
            warm_up.set()
            await asyncio.wait_for(gateway.wait_ready(), 10)
            ready = await http.get(url)
            await gateway.queue.put(ChannelEvent(channel_id="web:c1", sender="c1", text="go"))
            await asyncio.wait_for(running.wait(), 10)
            stop = asyncio.create_task(gateway.stop(deadline=30))  # waits for the turn
            await asyncio.sleep(0)
            stopping = await http.get(url)
            release.set()
            await stop
    finally:
        await gateway.stop(deadline=0)
        await runtime.close()
    assert (warming.status_code, warming.json()) == (503, {"ok": False, "ready": False})
    assert (ready.status_code, ready.json()) == (200, {"ok": True, "ready": True})
    assert stopping.status_code == 503
