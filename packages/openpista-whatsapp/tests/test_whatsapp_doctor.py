"""``openpista doctor``'s online token check (each phone number's Graph object) against
the Graph API emulator."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from openpista.cli.doctor import Check, run_online
from openpista_testing.doctor import channel_checks
from openpista_testing.ports import free_port, silent_port
from openpista_whatsapp import plugin
from openpista_whatsapp.testing import WhatsAppEmulator

Table = Callable[..., dict[str, Any]]
FIX = "check the network, or [channels.whatsapp] base_url"


checks = partial(channel_checks, plugin, "whatsapp")


async def test_the_token_is_valid_for_every_configured_number(
    graph: WhatsAppEmulator, whatsapp_table: Table
) -> None:
    table = whatsapp_table(phone_numbers=[{"phone_number_id": "222222"}])

    found = await run_online(checks(table), 10)

    assert found == [
        Check(f"channel whatsapp number {n}", True, f"token valid for +1 555-{n} (openpista test)")
        for n in ("111111", "222222")
    ]
    assert sorted(graph.requests) == [("GET", "/v21.0/111111"), ("GET", "/v21.0/222222")]


async def test_a_refused_token_is_a_cross_with_the_fix_and_no_secret(
    whatsapp_table: Table,
) -> None:
    (check,) = await run_online(checks(whatsapp_table(access_token="EAAG-wrong-token")), 10)

    assert check.ok is False
    assert check.detail == (
        "Meta refused the access token: HTTP 401 (code 190): Invalid OAuth access token."
    )
    assert "WHATSAPP_ACCESS_TOKEN" in check.fix
    assert "wrong" not in check.detail + check.fix


async def test_a_number_the_token_cannot_use_names_the_option(whatsapp_table: Table) -> None:
    (check,) = await run_online(checks(whatsapp_table(phone_number_id="999999")), 10)

    assert check.name == "channel whatsapp number 999999"
    assert check.ok is False
    assert check.detail.startswith("phone number 999999 is not reachable with this token: ")
    assert "phone_number_id" in check.fix


async def test_an_unreachable_api_names_where(whatsapp_table: Table) -> None:
    port = free_port()

    (check,) = await run_online(checks(whatsapp_table(base_url=f"http://127.0.0.1:{port}")), 10)

    assert check.ok is False
    assert check.detail.startswith(f"cannot reach http://127.0.0.1:{port}: ")
    assert check.fix == FIX


async def test_a_hung_api_is_cut_by_the_timeout(whatsapp_table: Table) -> None:
    with silent_port() as port:
        table = whatsapp_table(base_url=f"http://127.0.0.1:{port}")
        found = await run_online(checks(table), 0.5)

    assert found == [Check("channel whatsapp number 111111", False, "no answer within 0.5 s", FIX)]


def test_nothing_is_checked_for_a_disabled_or_invalid_table(whatsapp_table: Table) -> None:
    assert checks(whatsapp_table(enabled=False)) == []
    assert checks(whatsapp_table(access_token="")) == []
