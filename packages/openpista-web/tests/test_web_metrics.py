"""``[metrics] mount = "web"``: the daemon's ``/metrics`` on the web channel's server, behind
``[metrics] token`` (wrong or missing: 401; too many wrong: 429), refused beyond loopback
without a token. A real ``openpista start``, a real uvicorn on loopback."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from openpista.config import ConfigError, MetricsSettings, Settings
from openpista.observability.metrics import PrometheusRecorder
from openpista_testing.adapters import QueueContext
from openpista_testing.cli import Cli, emulator_config
from openpista_testing.daemon import ServingDaemons, stop_daemon
from openpista_testing.emulator import LlmEmulator
from openpista_testing.ports import free_port
from openpista_web.adapter import WebAdapter
from openpista_web.app import MetricsMount
from openpista_web.plugin import metrics_mount
from openpista_web.settings import WebSettings

WEB_TOKEN = "web-token-Hs7mQ2"
METRICS_TOKEN = "metrics-token-Lp4vX9"


def samples(text: str) -> dict[str, float]:
    """Every sample of an exposition, keyed ``name{labels}`` (parsed by prometheus_client)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


def test_the_daemon_serves_metrics_through_the_web_port(
    tmp_path: Path, llm_emulator: LlmEmulator
) -> None:
    cli = Cli.isolated(tmp_path, llm_emulator)
    cli.env["OPENPISTA_LOAD_PLUGINS"] = "web"
    port = free_port()
    cli.write_config(
        emulator_config(llm_emulator, tmp_path)
        + f'\n[channels.web]\nenabled = true\nport = {port}\ntoken = "{WEB_TOKEN}"\n'
        + f'\n[metrics]\nenabled = true\nmount = "web"\ntoken = "{METRICS_TOKEN}"\n'
    )
    url = f"http://127.0.0.1:{port}/metrics"

    def web_up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    daemons = ServingDaemons(cli, ["web"])
    try:
        process = daemons.start(ready=web_up)
        assert httpx.get(url, timeout=10).status_code == 401
        wrong = httpx.get(url, headers={"Authorization": f"Bearer {WEB_TOKEN}"}, timeout=10)
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"] == "Bearer"
        scraped = httpx.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10)
        assert scraped.status_code == 200, scraped.text
        assert scraped.headers["content-type"].startswith("text/plain")
        found = samples(scraped.text)
        assert found["openpista_channel_up{channel=web}"] == 1.0
        assert found["process_resident_memory_bytes{}"] > 0
        stderr = stop_daemon(process)
    finally:
        daemons.close()
    assert "metrics listens on" not in stderr  # mounted on the web server: no port of its own
    assert METRICS_TOKEN not in stderr


class Scraped(QueueContext):
    """A context whose daemon keeps metrics (a real :class:`PrometheusRecorder`)."""

    def __init__(self) -> None:
        super().__init__()
        self.recorder = PrometheusRecorder()
        self.recorder.channel_up("web", True)

    def metrics(self, accept: str) -> tuple[bytes, str] | None:
        return self.recorder.exposition(accept)


async def started(
    ctx: QueueContext, web_home: Path, mount: MetricsMount | None, **options: object
) -> WebAdapter:
    settings = WebSettings.from_table({"enabled": True, "port": 0, **options}, environ={})
    adapter = WebAdapter(settings, WEB_TOKEN, upload_dir=web_home / "up", metrics=mount)
    await adapter.start(ctx)
    return adapter


async def test_wrong_tokens_are_limited_and_openmetrics_is_negotiated(web_home: Path) -> None:
    adapter = await started(Scraped(), web_home, MetricsMount(METRICS_TOKEN), max_auth_failures=2)
    url = f"http://127.0.0.1:{adapter.port}/metrics"
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            good = {"Authorization": f"Bearer {METRICS_TOKEN}"}
            negotiated = await client.get(
                url, headers={**good, "Accept": "application/openmetrics-text; version=1.0.0"}
            )
            assert negotiated.headers["content-type"].startswith("application/openmetrics-text")
            assert negotiated.text.rstrip().endswith("# EOF")
            hostile = (
                "Bearer",
                f"Bearer {METRICS_TOKEN}x",
                f"Basic {METRICS_TOKEN}",
                "Bearer " + "A" * 8000,
            )
            codes = [
                (await client.get(url, headers={"Authorization": h})).status_code for h in hostile
            ]
            assert codes == [401, 401, 429, 429]  # the limiter of /ws and /api/auth
            locked = await client.get(url, headers=good)
            assert locked.status_code == 429
            assert int(locked.headers["retry-after"]) > 0
    finally:
        await adapter.stop()


async def test_no_metrics_route_unless_mounted_and_404_when_metrics_are_off(
    web_home: Path,
) -> None:
    unmounted = await started(Scraped(), web_home, None)
    off = await started(QueueContext(), web_home, MetricsMount(None))
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            page = await client.get(f"http://127.0.0.1:{unmounted.port}/metrics")
            assert "openpista_channel_up" not in page.text  # the client's 404, not metrics
            assert page.status_code == 404
            nothing = await client.get(f"http://127.0.0.1:{off.port}/metrics")
            assert nothing.status_code == 404
            assert "enabled" in nothing.text
    finally:
        await unmounted.stop()
        await off.stop()


def config(**metrics: object) -> Settings:
    return Settings(metrics=MetricsSettings.model_validate(metrics))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "chat.example.org"])
def test_a_public_web_server_needs_a_metrics_token(host: str) -> None:
    web = WebSettings.from_table({"host": host}, environ={})
    with pytest.raises(ConfigError, match=r"needs \[metrics\] token"):
        metrics_mount(web, config(enabled=True, mount="web"))
    mounted = metrics_mount(web, config(enabled=True, mount="web", token=METRICS_TOKEN))
    assert mounted == MetricsMount(METRICS_TOKEN)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_loopback_needs_no_token_and_port_mounts_nothing(host: str) -> None:
    web = WebSettings.from_table({"host": host}, environ={})
    assert metrics_mount(web, config(enabled=True, mount="web")) == MetricsMount(None)
    assert metrics_mount(web, config(enabled=True)) is None
    assert metrics_mount(web, config(enabled=False, mount="web")) is None


def test_an_unknown_mount_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="mount"):
        config(enabled=True, mount="telegram")
