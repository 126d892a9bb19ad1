"""Real gateways for tests: started on demand, all stopped at the end.

The ``gateways`` pytest fixture (from the openpista pytest plugin) hands one out::

    async def test_my_channel(gateways, llm_emulator, tmp_path):
        gateway = await gateways.start(emulator_settings(llm_emulator, tmp_path), MyAdapter())
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from openpista.channels import ChannelAdapter
    from openpista.config import Settings
    from openpista.gateway.gateway import Gateway


class Gateways:
    """Starts gateways (each with its own runtime) and stops every one on :meth:`close`."""

    def __init__(self) -> None:
        self.opened: list[Gateway] = []

    async def start(
        self, settings: Settings, *adapters: ChannelAdapter, approvals: bool = True
    ) -> Gateway:
        """A started gateway serving ``adapters``; with ``approvals`` the tool policy of
        ``settings`` and of the plugins applies (``ask`` sends approval requests), as in
        ``openpista start``."""
        from openpista.gateway.approvals import ApprovalBroker
        from openpista.gateway.gateway import Gateway
        from openpista.plugins import PluginHost
        from openpista.runtime import Runtime

        runtime = await Runtime.open(settings, PluginHost.load(entry_points=False))
        broker = ApprovalBroker.for_runtime(runtime) if approvals else None
        gateway = Gateway(runtime, adapters, approvals=broker)
        self.opened.append(gateway)
        await gateway.start()
        return gateway

    async def close(self) -> None:
        """Stop every gateway at once (turns cancelled) and close its runtime."""
        for gateway in self.opened:
            await gateway.stop(deadline=0)
            await gateway.runtime.close()
        self.opened.clear()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
