"""The Prometheus /metrics endpoint: a real gateway driven through the LLM emulator, scraped
by prometheus_client's parser and by a real Prometheus server (Debian's ``prometheus``,
started here on loopback) queried through its HTTP API."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from openpista.config import MetricsSettings, Settings
from openpista.gateway.gateway import Gateway
from openpista.observability.metrics import MAX_LABEL_VALUES, PrometheusRecorder, Recorder
from openpista.observability.metrics_server import MetricsServer, serve_metrics
from openpista.tools.registry import tool
from openpista_testing.adapters import LoopbackAdapter
from openpista_testing.cli import Cli, emulator_settings
from openpista_testing.daemon import Daemon
from openpista_testing.emulator import LlmEmulator
from openpista_testing.gateways import Gateways
from openpista_testing.polling import eventually
from openpista_testing.ports import free_port
from openpista_testing.processes import log_tail, stop_process

TOKEN = "scrape-secret-7f3a"
DOCS = Path(__file__).resolve().parents[3] / "docs"
DASHBOARD = DOCS / "grafana" / "openpista.json"


def metrics_settings(tmp_path: Path, emulator: LlmEmulator) -> Settings:
    settings = emulator_settings(emulator, tmp_path)
    settings.metrics = MetricsSettings(enabled=True, port=0, token=TOKEN)  # type: ignore[arg-type]
    return settings


@pytest.fixture
async def served(
    tmp_path: Path, llm_emulator: LlmEmulator, gateways: Gateways
) -> AsyncIterator[tuple[Gateway, LoopbackAdapter, MetricsServer]]:
    """A gateway with metrics on, one chat channel ``t`` and its /metrics endpoint."""

    @tool("probe", "Answer pong.")
    async def probe() -> str:
        return "pong"

    settings = metrics_settings(tmp_path, llm_emulator)
    chat = LoopbackAdapter("t:")
    gateway = await gateways.start(settings, chat, approvals=False)
    gateway.runtime.toolbox.tools.register(probe)
    server = serve_metrics(gateway.runtime.recorder, settings.metrics)
    assert server is not None
    yield gateway, chat, server
    server.stop()


async def drive(chat: LoopbackAdapter, emulator: LlmEmulator) -> str:
    """Two answered turns (one with a tool call) and one failed LLM request; the session id."""
    emulator.reply_tool_calls([("probe", {})], usage=(300, 10))
    emulator.reply_text("pong it is", usage=(320, 12))
    await chat.say("1", "probe it")
    session = (await chat.answer("1")).session_id
    emulator.reply_error(400, "bad request")
    await chat.say("1", "again")
    assert (await chat.answer("1")).is_error
    assert session is not None
    return session


async def scrape(
    server: MetricsServer, token: str | bytes | None = TOKEN, path: str = "/metrics"
) -> httpx.Response:
    headers: dict[bytes, bytes] = {}
    if token is not None:
        raw = token if isinstance(token, bytes) else token.encode()
        headers[b"Authorization"] = b"Bearer " + raw
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(server.url.replace("/metrics", path), headers=headers)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_the_exposition_counts_turns_llm_calls_tokens_and_tools(
    served: tuple[Gateway, LoopbackAdapter, MetricsServer], llm_emulator: LlmEmulator
) -> None:
    gateway, chat, server = served
    session = await drive(chat, llm_emulator)
    response = await scrape(server)
    assert response.status_code == 200
    found = samples(response.text)
    model = (("model", "gpt-4o-mini"), ("provider", "openai"))
    turns = "openpista_turn_duration_seconds_count"
    assert found[(turns, (("channel", "t"), ("outcome", "ok")))] == 1
    assert found[(turns, (("channel", "t"), ("outcome", "error")))] == 1
    calls = "openpista_llm_request_duration_seconds_count"
    assert found[(calls, (model[0], ("outcome", "ok"), model[1]))] == 2
    assert found[(calls, (model[0], ("outcome", "bad_request"), model[1]))] == 1
    tokens = (("channel", "t"), ("direction", "input"), *model)
    assert found[("openpista_llm_tokens_total", tokens)] == 620
    assert found[("openpista_llm_cost_usd_total", (("channel", "t"), *model))] > 0
    assert found[("openpista_tool_calls_total", (("outcome", "ok"), ("tool", "probe")))] == 1
    assert found[("openpista_errors_total", (("kind", "bad_request"),))] == 1
    assert found[("openpista_llm_time_to_first_token_seconds_count", model)] == 1
    assert found[("openpista_active_sessions", ())] == 1
    assert found[("openpista_turns_in_flight", ())] == 0
    assert found[("openpista_queue_depth", ())] == 0
    assert found[("openpista_channel_up", (("channel", "t"),))] == 1
    assert found[("process_resident_memory_bytes", ())] > 0
    # Low cardinality: no session id or chat id, no user text in any label.
    for needle in (session, "t:1", "probe it"):
        assert needle not in response.text
    assert gateway.recorder is gateway.runtime.recorder


async def test_a_scrape_needs_the_bearer_token(
    served: tuple[Gateway, LoopbackAdapter, MetricsServer],
) -> None:
    _, _, server = served
    for refused in (None, "wrong", TOKEN + "x", "ünïcode".encode("latin-1"), b"\xff\xfe"):
        assert (await scrape(server, token=refused)).status_code == 401
    assert (await scrape(server)).status_code == 200
    assert (await scrape(server, path="/")).status_code == 404


async def test_metrics_off_serves_nothing_and_a_taken_port_names_the_option() -> None:
    assert serve_metrics(Recorder(), MetricsSettings(enabled=True)) is None
    assert serve_metrics(PrometheusRecorder(), MetricsSettings(enabled=False)) is None
    first = serve_metrics(PrometheusRecorder(), MetricsSettings(enabled=True, port=0))
    assert first is not None
    try:
        port = int(first.url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(OSError, match=r"change \[metrics\] port"):
            serve_metrics(PrometheusRecorder(), MetricsSettings(enabled=True, port=port))
    finally:
        first.stop()


def test_mounted_on_the_web_channel_the_daemon_opens_no_port(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = MetricsSettings(enabled=True, port=0, mount="web")
    assert serve_metrics(PrometheusRecorder(), settings, ["web", "cli"]) is None
    assert not caplog.records
    assert serve_metrics(PrometheusRecorder(), settings, ["cli"]) is None
    (warned,) = [r.getMessage() for r in caplog.records]
    assert warned.startswith('❌ [metrics] mount = "web" but the web channel is not served')


def test_the_exposition_follows_the_accept_header() -> None:
    recorder = PrometheusRecorder()
    recorder.error("turn")
    text, text_type = recorder.exposition("") or (b"", "")
    assert text_type.startswith("text/plain")
    assert b'openpista_errors_total{kind="turn"} 1.0' in text
    openmetrics, kind = recorder.exposition("application/openmetrics-text") or (b"", "")
    assert kind.startswith("application/openmetrics-text")
    assert openmetrics.endswith(b"# EOF\n")
    assert Recorder().exposition("") is None


def test_a_label_takes_a_bounded_number_of_values() -> None:
    recorder = PrometheusRecorder()
    for n in range(MAX_LABEL_VALUES + 10):
        recorder.llm_call("openai", f"model-{n}", 0.1, None, "ok")
    models = {
        s.labels["model"]
        for family in text_string_to_metric_families(httpx_free_exposition(recorder))
        for s in family.samples
        if family.name == "openpista_llm_request_duration_seconds"
    }
    assert len(models) == MAX_LABEL_VALUES + 1
    assert "other" in models


def httpx_free_exposition(recorder: PrometheusRecorder) -> str:
    from prometheus_client import generate_latest

    return generate_latest(recorder.registry).decode()


async def test_a_real_prometheus_server_scrapes_the_endpoint(
    served: tuple[Gateway, LoopbackAdapter, MetricsServer],
    llm_emulator: LlmEmulator,
    tmp_path: Path,
) -> None:
    _, chat, server = served
    await drive(chat, llm_emulator)
    target = server.url.removeprefix("http://").removesuffix("/metrics")
    config, port = tmp_path / "prometheus.yml", free_port()
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: openpista\n"
        f"    authorization:\n      credentials: {TOKEN}\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 (stopped by stop_process below)
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api = f"http://127.0.0.1:{port}/api/v1/query"

    def query(expression: str) -> list[dict[str, object]] | None:
        assert process.poll() is None, log_tail(log, 30)
        try:
            answer = httpx.get(api, params={"query": expression}, timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return None  # not listening yet
        return answer["data"]["result"] or None

    try:
        expression = 'openpista_llm_tokens_total{direction="output",channel="t"}'
        [result] = await eventually(lambda: query(expression), wait=60)
        assert result["value"][1] == "22"
        [up] = await eventually(lambda: query('up{job="openpista"}'), wait=30)
        assert up["value"][1] == "1"
        [tools] = await eventually(lambda: query("sum(openpista_tool_calls_total)"), wait=30)
        assert tools["value"][1] == "1"
        for panel in json.loads(DASHBOARD.read_text())["panels"]:  # the docs' PromQL is valid
            for target in panel["targets"]:
                async with httpx.AsyncClient(timeout=5) as client:
                    answer = (await client.get(api, params={"query": target["expr"]})).json()
                assert answer["status"] == "success", (panel["title"], answer)
    finally:
        stop_process(process, signal.SIGTERM, 10)


def test_the_documented_alert_rules_pass_promtool(tmp_path: Path) -> None:
    text = (DOCS / "observability.md").read_text()
    rules = text.split("Example alert rules:\n\n```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "rules.yml"
    path.write_text(rules)
    checked = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout


def test_the_daemon_serves_metrics_and_logs_json(tmp_path: Path, llm_emulator: LlmEmulator) -> None:
    cli = Cli.isolated(tmp_path, llm_emulator)
    with cli.config.open("a") as config:
        config.write(f'\n[metrics]\nenabled = true\nport = 0\ntoken = "{TOKEN}"\n')
    llm_emulator.reply_text("metered answer", usage=(40, 4))
    daemon = Daemon(cli, "--log-format", "json", "-v")
    try:
        line = daemon.wait_for("metrics listens on ")
        url = line.split("metrics listens on ", 1)[1].strip()
        daemon.send("hello")
        daemon.wait_for("metered answer")
        headers = {"Authorization": f"Bearer {TOKEN}"}

        def scraped() -> float:
            text = httpx.get(url, headers=headers, timeout=10).text
            key = (
                "openpista_llm_tokens_total",
                (("channel", "cli"), ("direction", "output"), ("model", "gpt-4o-mini"),
                 ("provider", "openai")),
            )  # fmt: skip
            return samples(text).get(key, 0.0)

        deadline = time.monotonic() + 30
        while scraped() != 4 and time.monotonic() < deadline:  # the turn ends after its answer
            time.sleep(0.05)
        assert scraped() == 4
    finally:
        daemon.stop()
    logged = [line for line in daemon.stderr if line.startswith("{")]
    assert logged, daemon.output()
    for record in map(json.loads, logged):
        assert {"time", "level", "logger", "message", "session", "channel", "request_id"} <= set(
            record
        )
    assert "test-key" not in daemon.output()  # the provider key of emulator_config
