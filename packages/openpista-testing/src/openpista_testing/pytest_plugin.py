"""The openpista pytest plugin (entry point ``pytest11``): fixtures shared by every package.

Kept tiny, with lazy imports: pytest loads it in every run of every package, including
environments without the ``testing`` extra.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
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
