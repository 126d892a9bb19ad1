"""Failed sends reach the operator's channel through the real gateway, rate-limited."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from openpista.config import ConfigError
from openpista.gateway.gateway import Gateway
from openpista.models import Answer
from openpista_testing.adapters import LoopbackAdapter
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator
from openpista_testing.gateways import Gateways
from openpista_whatsapp.adapter import WhatsAppAdapter
from openpista_whatsapp.settings import load_whatsapp_config
from openpista_whatsapp.testing import (
    WhatsAppEmulator,
    signed_post,
    system_error,
    webhook_payload,
)

USER = "4915550001"
NUMBER = "111111"
TOKEN = "EAAG-test-access-token-123"
APP_SECRET = "app-secret-456"
PAIR_RATE_LIMIT = system_error(
    131056,
    "(Business Account, Consumer Account) pair rate limit hit",
    "Message failed to send because there were too many messages sent from this phone number "
    "to the same phone number in a short period of time.",
)
BAD_NUMBER = (400, 131030, "Recipient phone number not in allowed list")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Ops:
    """A WhatsApp adapter and an operator channel ``ops:admin`` on one real gateway."""

    adapter: WhatsAppAdapter
    ops: LoopbackAdapter
    clock: Clock
    gateway: Gateway

    async def answer(self, text: str = "hello") -> None:
        """What the gateway does with an agent's answer for the WhatsApp user."""
        await self.gateway.deliver(Answer(channel_id=f"whatsapp:{USER}", text=text))

    @property
    def notices(self) -> list[Answer]:
        return [m for m in self.ops.sent["ops:admin"] if isinstance(m, Answer)]

    async def meta_reports(self, *errors: dict[str, Any]) -> None:
        """Meta POSTs a signed webhook with system-level ``errors``; waits for its handling."""
        body, headers = signed_post(webhook_payload(NUMBER, errors=list(errors)), APP_SECRET)
        url = f"http://127.0.0.1:{self.adapter.port}/webhook"
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.post(url, content=body, headers=headers)
        assert answer.status_code == 200
        while self.adapter._work:
            await asyncio.gather(*self.adapter._work, return_exceptions=True)


StartOps = Callable[..., Any]


@pytest.fixture
def start_ops(
    tmp_path: Path,
    llm_emulator: LlmEmulator,
    gateways: Gateways,
    whatsapp_table: Callable[..., dict[str, Any]],
) -> StartOps:
    async def start(**overrides: Any) -> Ops:
        overrides.setdefault("operator_channel", "ops:admin")
        adapter = WhatsAppAdapter(load_whatsapp_config(whatsapp_table(**overrides)))
        ops = LoopbackAdapter("ops:")
        settings = emulator_settings(llm_emulator, tmp_path)
        gateway = await gateways.start(settings, adapter, ops)
        clock = Clock()
        if adapter.notices is not None:
            adapter.notices.clock = clock
        return Ops(adapter, ops, clock, gateway)

    return start


async def test_a_permanent_error_sends_one_notice_without_the_token(
    start_ops: StartOps, graph: WhatsAppEmulator
) -> None:
    deployed = await start_ops()
    graph.fail_next(*BAD_NUMBER)
    await deployed.answer()
    (notice,) = deployed.notices
    assert notice.is_error
    assert notice.text.startswith(f"❌ WhatsApp: could not send to +{USER}: ")
    assert "131030" in notice.text
    assert "Recipient phone number not in allowed list" in notice.text
    assert "permanent" in notice.text
    assert TOKEN not in notice.text
    assert not graph.sent


async def test_a_burst_sends_one_notice_then_counts_the_held_back_ones(
    start_ops: StartOps, graph: WhatsAppEmulator
) -> None:
    deployed = await start_ops()
    graph.fail_next(*BAD_NUMBER, times=5)
    for n in range(5):
        await deployed.answer(f"answer {n}")
    assert len(deployed.notices) == 1
    assert "more" not in deployed.notices[0].text
    graph.fail_next(404, 132001, "Template name does not exist in the translation")
    await deployed.answer()  # another reason: its own notice at once
    assert len(deployed.notices) == 2
    assert "132001" in deployed.notices[1].text
    deployed.clock.now += 30
    graph.fail_next(*BAD_NUMBER)
    await deployed.answer()  # still within the minute: held back
    assert len(deployed.notices) == 2
    deployed.clock.now += 31
    graph.fail_next(*BAD_NUMBER)
    await deployed.answer()
    assert len(deployed.notices) == 3
    assert "131030" in deployed.notices[2].text
    assert "(5 more failures like this since the last notice)" in deployed.notices[2].text


async def test_429_then_success_sends_no_notice(
    start_ops: StartOps, graph: WhatsAppEmulator
) -> None:
    deployed = await start_ops()
    graph.fail_next(429, 130429, "Rate limit hit", times=2)
    await deployed.answer("eventually")
    (sent,) = await graph.wait_for_sent(1)
    assert sent.body["template"]["name"] == "reengage"  # outside the 24-hour window
    assert deployed.notices == []


async def test_retries_exhausted_is_reported(start_ops: StartOps, graph: WhatsAppEmulator) -> None:
    deployed = await start_ops(max_retries=1)
    graph.fail_next(429, 130429, "Rate limit hit", times=2)
    await deployed.answer()
    (notice,) = deployed.notices
    assert "retries exhausted" in notice.text
    assert "130429" in notice.text


async def test_no_template_configured_is_reported(
    start_ops: StartOps, graph: WhatsAppEmulator
) -> None:
    deployed = await start_ops(template_name=None)
    await deployed.answer()
    (notice,) = deployed.notices
    assert "template_name is not set" in notice.text
    assert graph.requests == []


async def test_without_operator_channel_failures_are_only_logged(
    start_ops: StartOps, graph: WhatsAppEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    deployed = await start_ops(operator_channel=None)
    graph.fail_next(*BAD_NUMBER)
    await deployed.answer()
    assert deployed.adapter.notices is None
    assert deployed.notices == []
    assert "131030" in caplog.text


async def test_an_operator_on_whatsapp_gets_no_notice_about_itself(
    start_ops: StartOps, graph: WhatsAppEmulator
) -> None:
    deployed = await start_ops(operator_channel=f"whatsapp:{USER}")
    graph.fail_next(*BAD_NUMBER, times=2)
    await deployed.answer()
    assert len(graph.requests) == 1  # the failed answer, and no notice sent after it
    assert not graph.sent


def test_operator_channel_must_be_a_channel_id(
    whatsapp_table: Callable[..., dict[str, Any]],
) -> None:
    with pytest.raises(ConfigError, match="operator_channel"):
        load_whatsapp_config(whatsapp_table(operator_channel="telegram"))
    config = load_whatsapp_config(whatsapp_table(operator_channel=" telegram:42 "))
    assert config.operator_channel == "telegram:42"


async def test_system_level_webhook_errors_are_logged_and_reach_the_operator(
    start_ops: StartOps, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    deployed = await start_ops()
    await deployed.meta_reports(PAIR_RATE_LIMIT)
    (line,) = [r for r in caplog.records if "Meta reports error" in r.getMessage()]
    assert line.levelno == logging.ERROR
    assert "131056" in line.getMessage()
    assert "pair rate limit hit" in line.getMessage()
    (notice,) = deployed.notices
    assert notice.is_error
    assert notice.text.startswith("❌ WhatsApp: Meta reports error 131056 for number 111111: ")
    assert "too many messages sent from this phone number" in notice.text
    await deployed.meta_reports(PAIR_RATE_LIMIT, PAIR_RATE_LIMIT)  # a burst: held back
    assert len(deployed.notices) == 1
    other = system_error(131000, "Something went wrong", "")
    await deployed.meta_reports(other)  # another code: its own notice at once
    assert len(deployed.notices) == 2
    assert deployed.notices[1].text == (
        "❌ WhatsApp: Meta reports error 131000 for number 111111: Something went wrong"
    )
    deployed.clock.now += 61
    await deployed.meta_reports(PAIR_RATE_LIMIT)
    assert len(deployed.notices) == 3
    assert "(2 more failures like this since the last notice)" in deployed.notices[2].text
    assert len([r for r in caplog.records if "Meta reports error" in r.getMessage()]) == 5


async def test_system_level_errors_without_operator_channel_are_logged(
    start_ops: StartOps, caplog: pytest.LogCaptureFixture
) -> None:
    deployed = await start_ops(operator_channel=None)
    await deployed.meta_reports(PAIR_RATE_LIMIT)
    assert deployed.notices == []
    assert "Meta reports error 131056 for number 111111" in caplog.text
