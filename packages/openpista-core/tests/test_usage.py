"""Token usage and cost stored per LLM response, /usage, `openpista usage`, and budgets:
the real gateway and litellm-free openai client against the LLM emulator, real SQLite."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from openpista.cli.main import cli
from openpista.config import BudgetSettings, ModelPrice, Settings
from openpista.control.budget import budget_request
from openpista.control.chat import BadRequest
from openpista.gateway.gateway import Gateway
from openpista.memory import MemoryStore, MemoryStoreError
from openpista.memory.usage import UsageFilter
from openpista.models import Answer, Usage
from openpista.observability.prices import PriceBook, litellm_prices
from openpista.observability.report import parse_since
from openpista.observability.usage import UsageMeter
from openpista.tools.base import Tool
from openpista.tools.registry import tool
from openpista_testing.adapters import LoopbackAdapter
from openpista_testing.cli import Cli, emulator_settings
from openpista_testing.daemon import Daemon
from openpista_testing.emulator import LlmEmulator
from openpista_testing.gateways import Gateways

# gpt-4o-mini in litellm's price map (USD per token), as the emulator's model is priced.
MINI = litellm_prices()["gpt-4o-mini"]


def priced(tmp_path: Path, emulator: LlmEmulator, **budget: object) -> Settings:
    settings = emulator_settings(emulator, tmp_path)
    settings.budget = BudgetSettings(**budget)  # type: ignore[arg-type]
    return settings


async def open_chat(
    gateways: Gateways, settings: Settings, *tools: Tool
) -> tuple[Gateway, LoopbackAdapter]:
    chat = LoopbackAdapter("t:")
    gateway = await gateways.start(settings, chat, approvals=False)
    for extra in tools:
        gateway.runtime.toolbox.tools.register(extra)
    return gateway, chat


async def ask(chat: LoopbackAdapter, who: str, text: str) -> Answer:
    await chat.say(who, text)
    return await chat.answer(who)


async def turn(chat: LoopbackAdapter, who: str, text: str) -> str:
    return (await ask(chat, who, text)).text


async def test_streamed_usage_is_stored_per_response_with_its_litellm_price(
    tmp_path: Path, llm_emulator: LlmEmulator, gateways: Gateways
) -> None:
    @tool("probe", "Answer pong.")
    async def probe() -> str:
        return "pong"

    gateway, chat = await open_chat(gateways, priced(tmp_path, llm_emulator), probe)
    llm_emulator.reply_tool_calls([("probe", {})], usage=(1000, 20))
    llm_emulator.reply_text("done, pong", usage=(1200, 30), chunk_size=2)
    answer = await ask(chat, "1", "probe it")
    assert answer.text == "done, pong"
    assert all(r.json.get("stream") for r in llm_emulator.requests)  # usage came streamed
    [total] = await gateway.runtime.memory.usage_totals()
    assert (total.provider, total.model, total.responses) == ("openai", "gpt-4o-mini", 2)
    assert (total.prompt_tokens, total.completion_tokens, total.unpriced) == (2200, 50, 0)
    assert math.isclose(total.cost_usd, 2200 * MINI[0] + 50 * MINI[1])
    reply = await turn(chat, "1", "/usage")
    assert f"session {answer.session_id}: 2,250 tokens (2,200 in, 50 out), $" in reply
    assert "today (UTC), every session: 2,250 tokens" in reply


async def test_a_configured_price_overrides_the_map_and_unknown_models_are_unpriced(
    tmp_path: Path, llm_emulator: LlmEmulator, gateways: Gateways
) -> None:
    prices = {"openai/gpt-4o-mini": ModelPrice(input=1000, output=2000)}
    gateway, chat = await open_chat(gateways, priced(tmp_path, llm_emulator, prices=prices))
    llm_emulator.reply_text("a", usage=(100, 50))
    await turn(chat, "1", "hi")
    assert await gateway.runtime.memory.spent() == pytest.approx(100 * 1e-3 + 50 * 2e-3)
    book = PriceBook()
    assert book.cost("custom", "no-such-model-anywhere", Usage(prompt_tokens=5)) is None
    assert book.price("openrouter", "openrouter/openai/gpt-4o-mini") is not None


async def test_the_session_budget_stops_the_llm_and_says_why_in_one_line(
    tmp_path: Path, llm_emulator: LlmEmulator, gateways: Gateways
) -> None:
    prices = {"gpt-4o-mini": ModelPrice(input=1000, output=1000)}  # 1000 tokens: $1
    settings = priced(tmp_path, llm_emulator, per_session_usd=0.5, prices=prices)
    gateway, chat = await open_chat(gateways, settings)
    llm_emulator.reply_text("first", usage=(400, 200))  # $0.60: over after this turn
    first = await ask(chat, "1", "hi")
    assert first.text == "first"
    asked = len(llm_emulator.requests)
    refused = await turn(chat, "1", "and again")
    assert refused.startswith("❌ ")
    assert "\n" not in refused
    assert "per_session_usd = 0.5" in refused
    assert "$0.6000" in refused
    assert len(llm_emulator.requests) == asked  # no LLM call
    llm_emulator.reply_text("another session is not capped by this one")
    assert await turn(chat, "2", "hello") == "another session is not capped by this one"
    assert first.session_id is not None
    stored = await gateway.runtime.memory.load_messages(first.session_id)
    assert [m.content for m in stored if m.role == "user"] == ["hi"]  # the refused one isn't


async def test_the_daily_budget_counts_every_session_and_stops_mid_turn(
    tmp_path: Path, llm_emulator: LlmEmulator, gateways: Gateways
) -> None:
    @tool("probe", "Answer pong.")
    async def probe() -> str:
        return "pong"

    prices = {"gpt-4o-mini": ModelPrice(input=1000, output=1000)}
    settings = priced(tmp_path, llm_emulator, daily_usd=1.0, prices=prices)
    gateway, chat = await open_chat(gateways, settings, probe)
    llm_emulator.reply_tool_calls([("probe", {})], usage=(900, 200))  # $1.10 in round one
    llm_emulator.reply_text("never asked")
    stopped = await turn(chat, "1", "probe")
    assert stopped.startswith("❌ The daily budget is spent: $1.1000 of [budget] daily_usd = 1")
    assert len(llm_emulator.requests) == 1
    assert llm_emulator.pending == 1
    assert (await turn(chat, "2", "a new chat")).startswith("❌ The daily budget is spent")
    assert len(llm_emulator.requests) == 1
    yesterday = datetime.now(UTC) - timedelta(days=1)
    assert await gateway.runtime.memory.spent(since=yesterday) == pytest.approx(1.1)


async def test_usage_records_refuse_hostile_values_on_both_databases(store: MemoryStore) -> None:
    hostile = [((-1, 0), 0.0), ((1, True), 0.0), ((1, 1), -0.5), ((1, 1), math.nan)]
    for tokens, cost in [*hostile, ((2**31, 0), 0.0), ((1, 1), math.inf)]:
        with pytest.raises(MemoryStoreError):
            await store.record_usage("s", "t:1", "openai", "m", tokens, cost)
    with pytest.raises(MemoryStoreError):
        await store.record_usage("s", "t:1", "openai", "m\x00", (1, 1), None)
    with pytest.raises(MemoryStoreError):
        await store.record_usage("x" * 300, "t:1", "openai", "m", (1, 1), None)
    await store.record_usage("s", "tele_gram:1", "openai", "m", (1, 1), None)
    await store.record_usage("s", "telexgram:2", "openai", "m", (2, 2), 0.1)
    # LIKE wildcards in a --channel value match only themselves.
    assert await store.usage_totals(UsageFilter(channel="tele%")) == []
    [one] = await store.usage_totals(UsageFilter(channel="tele_gram"))
    assert (one.prompt_tokens, one.unpriced) == (1, 1)
    assert await store.spent(session_id="s") == pytest.approx(0.1)
    assert await store.spent(since=datetime.now(UTC) + timedelta(hours=1)) == 0


def test_since_accepts_ages_and_today_only() -> None:
    now = datetime(2026, 12, 3, 15, 30, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("today", now) == datetime(2026, 12, 3, tzinfo=UTC)
    for bad in ["7", "-1d", "7 days", "1y", "9999999d", ""]:
        with pytest.raises(ValueError, match="30m, 12h, 7d, 2w"):
            parse_since(bad, now)


def test_the_usage_command_filters_and_prints_json(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"

    async def populate() -> None:
        async with await MemoryStore.open(url) as store:
            await store.record_usage("s1", "t:1", "openai", "gpt-4o-mini", (10, 5), 0.25)
            await store.record_usage("s2", "t:2", "openai", "gpt-4o-mini", (7, 3), 0.5)

    asyncio.run(populate())
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "{url}"\n[agent]\nworkspace = "{tmp_path}"\n')
    runner = CliRunner()
    base = ["--no-daemon", "-c", str(config), "usage"]
    shown = runner.invoke(cli, [*base, "--since", "1h", "--json"])
    assert shown.exit_code == 0, shown.output
    [model] = json.loads(shown.output)["models"]
    assert model == {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "responses": 2,
        "prompt_tokens": 17,
        "completion_tokens": 8,
        "cost_usd": 0.75,
        "unpriced": 0,
    }
    one = runner.invoke(cli, [*base, "--session", "s2", "--channel", "t"])
    assert one.exit_code == 0, one.output
    assert one.output.splitlines()[1].split() == ["openai", "gpt-4o-mini", "1", "7", "3", "0.5000"]
    assert "No LLM usage" in runner.invoke(cli, [*base, "--channel", "telegram"]).output
    bad = runner.invoke(cli, [*base, "--since", "forever"])
    assert bad.exit_code == 2
    assert bad.output.startswith("❌ --since 'forever'")
    assert "Traceback" not in bad.output


async def test_a_response_whose_usage_cannot_be_stored_is_still_answered(
    tmp_path: Path, llm_emulator: LlmEmulator, gateways: Gateways
) -> None:
    gateway, chat = await open_chat(gateways, priced(tmp_path, llm_emulator))
    llm_emulator.reply_text("absurd usage", usage=(2**40, 1))  # a hostile or broken server
    assert await turn(chat, "1", "hi") == "absurd usage"
    assert await gateway.runtime.memory.usage_totals() == []


BUDGET_CONFIG = """
[budget]
daily_usd = 0.5

[budget.prices."gpt-4o-mini"]
input = 1000
output = 1000
"""  # 1000 tokens: $1


def test_the_operator_raises_the_budget_live_and_a_restart_keeps_it(
    tmp_path: Path, llm_emulator: LlmEmulator
) -> None:
    cli = Cli.isolated(tmp_path, llm_emulator)
    with cli.config.open("a") as config:
        config.write(BUDGET_CONFIG)
    llm_emulator.reply_text("first answer", usage=(400, 200))  # $0.60: over the day's $0.5
    daemon = Daemon(cli)
    try:
        daemon.send("hello")
        daemon.wait_for("first answer")
        daemon.send("and again")
        assert "[budget] daily_usd = 0.5" in daemon.wait_for("The daily budget is spent")
        asked = len(llm_emulator.requests)
        raised = cli("budget", "set", "--daily", "5")  # through the daemon's control socket
        assert raised.returncode == 0, raised.stderr
        assert raised.stdout.splitlines()[0] == (
            "daily: $5 (set with `openpista budget set`), spent today (UTC) $0.6000"
        )
        llm_emulator.reply_text("after the raise")
        daemon.send("once more")  # the same chat goes on: no restart
        daemon.wait_for("after the raise")
        assert len(llm_emulator.requests) == asked + 1
    finally:
        daemon.stop()
    shown = cli("budget", "--json")  # no daemon: read from the database
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["daily"]["usd"] == 5
    restarted = Daemon(cli)
    try:
        llm_emulator.reply_text("kept over the restart")
        restarted.send("after the restart")
        restarted.wait_for("kept over the restart")
        lowered = cli("budget", "unset", "--daily")  # back to [budget] daily_usd
        assert lowered.returncode == 0, lowered.stderr
        assert lowered.stdout.startswith("daily: $0.5 ([budget] daily_usd)")
        restarted.send("one more")
        restarted.wait_for("The daily budget is spent")
    finally:
        restarted.stop()
    assert llm_emulator.pending == 0


async def test_a_session_cap_set_live_unblocks_that_session_only(
    tmp_path: Path, llm_emulator: LlmEmulator, gateways: Gateways
) -> None:
    prices = {"gpt-4o-mini": ModelPrice(input=1000, output=1000)}
    settings = priced(tmp_path, llm_emulator, per_session_usd=0.5, prices=prices)
    gateway, chat = await open_chat(gateways, settings)
    llm_emulator.reply_text("first", usage=(400, 200))
    first = await ask(chat, "1", "hi")
    assert first.session_id is not None
    refused = await turn(chat, "1", "again")
    assert f"`openpista budget set --session {first.session_id} USD`" in refused
    meter = gateway.runtime.meter
    report = await budget_request(meter, {"type": "budget", "session": first.session_id, "usd": 2})
    assert report["data"]["sessions"] == [{"session": first.session_id, "usd": 2.0, "spent": 0.6}]
    llm_emulator.reply_text("raised")
    assert await turn(chat, "1", "again") == "raised"
    assert "of the budget set with `openpista budget` = $2\n" in await turn(chat, "1", "/usage")
    assert await gateway.runtime.memory.budget_limits() == [("session", first.session_id, 2.0)]
    await budget_request(meter, {"type": "budget", "session": first.session_id, "usd": None})
    assert "per_session_usd = 0.5" in await turn(chat, "1", "and now")
    assert await gateway.runtime.memory.budget_limits() == []


async def test_budget_requests_refuse_hostile_values(store: MemoryStore) -> None:
    meter = UsageMeter(store, BudgetSettings())
    hostile: list[dict[str, object]] = [
        {"daily": -1},
        {"daily": 0},
        {"daily": "5"},
        {"daily": True},
        {"daily": math.nan},
        {"daily": math.inf},
        {"daily": [5]},
        {"daily": 1, "session": "s"},
        {"session": ""},
        {"session": 7, "usd": 1},
        {"session": "s", "usd": "lots"},
    ]
    for frame in hostile:
        with pytest.raises(BadRequest):
            await budget_request(meter, {"type": "budget", **frame})
    for session in ("x" * 300, "bad\x00id"):
        with pytest.raises(MemoryStoreError):
            await budget_request(meter, {"type": "budget", "session": session, "usd": 1})
    with pytest.raises(MemoryStoreError):
        await store.set_budget_limit("weekly", "", 1.0)
    with pytest.raises(MemoryStoreError):
        await store.set_budget_limit("daily", "s", 1.0)
    assert await store.budget_limits() == []
    report = (await budget_request(meter, {"type": "budget"}))["data"]
    assert report == {
        "daily": {"usd": None, "set": False, "spent_today": 0},
        "per_session_usd": None,
        "sessions": [],
    }


def test_the_budget_command_refuses_bad_arguments_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    config.write_text(f'[database]\nurl = "{url}"\n[agent]\nworkspace = "{tmp_path}"\n')
    runner = CliRunner()
    base = ["--no-daemon", "-c", str(config), "budget"]
    for args in (
        ["set"],
        ["set", "--daily", "1", "--session", "s", "1"],
        ["set", "--session", "s", "lots"],
        ["set", "--daily", "-2"],
        ["unset"],
    ):
        refused = runner.invoke(cli, [*base, *args])
        assert refused.exit_code == 2, (args, refused.output)
        assert refused.output.startswith("❌ ")
        assert "Traceback" not in refused.output
    assert runner.invoke(cli, [*base, "set", "--session", "s1", "3"]).exit_code == 0
    shown = runner.invoke(cli, base)
    assert shown.output.splitlines() == [
        "daily: none, spent today (UTC) $0.0000",
        "per session: none",
        "session s1: $3 (set), spent $0.0000",
    ]
