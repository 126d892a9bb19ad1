"""The openpista pytest plugin (entry point ``pytest11``): fixtures shared by every package.

Kept tiny, with lazy imports: pytest loads it in every run of every package, including
environments without the ``testing`` extra.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from openpista_testing.cli import Cli
    from openpista_testing.daemon import Daemon
    from openpista_testing.emulator import LlmEmulator
    from openpista_testing.gateways import Gateways


@pytest.fixture
def llm_emulator() -> Iterator[LlmEmulator]:
    """A started :class:`~openpista_testing.emulator.LlmEmulator`, stopped after the test."""
    from openpista_testing.emulator import LlmEmulator

    with LlmEmulator() as emulator:
        yield emulator


@pytest.fixture
async def gateways() -> AsyncIterator[Gateways]:
    """Start real gateways with ``await gateways.start(settings, *adapters)``; all are
    stopped after the test (:class:`~openpista_testing.gateways.Gateways`)."""
    from openpista_testing.gateways import Gateways

    async with Gateways() as opened:
        yield opened


@pytest.fixture
def daemons() -> Iterator[Callable[..., Daemon]]:
    """Start real daemons with ``daemons(cli, *args)`` (``openpista start ARGS`` of ``cli``:
    :class:`~openpista_testing.daemon.Daemon`); those still running are killed after the
    test."""
    from openpista_testing.daemon import Daemon

    started: list[Daemon] = []

    def start(cli: Cli, *args: str) -> Daemon:
        daemon = Daemon(cli, *args)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()
