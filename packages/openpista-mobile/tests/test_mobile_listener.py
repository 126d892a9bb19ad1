"""The mobile channel announces its bound QUIC address (the daemon prints it; `status` shows
it), also when the configured port is 0."""

from __future__ import annotations

from openpista.serving import Listener, listeners
from openpista_mobile.adapter import MobileAdapter


async def test_the_bound_quic_address_is_announced_until_stopped(mobile: MobileAdapter) -> None:
    assert mobile.port > 0
    quic = [item for item in listeners() if item.name == "mobile QUIC"]
    assert quic == [Listener("mobile QUIC", f"quic://127.0.0.1:{mobile.port}")]
    await mobile.stop()
    assert [item for item in listeners() if item.name == "mobile QUIC"] == []
