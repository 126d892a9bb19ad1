"""The plugin as openpista loads it: the channel factory, the contract, the CLI commands."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from openpista.channels import ChannelAdapter
from openpista.config import Settings
from openpista_testing.cli import Cli
from openpista_testing.contracts import ChannelContract
from openpista_web.adapter import WebAdapter
from openpista_web.auth import token_file
from openpista_web.plugin import create_web_adapter
from openpista_web.settings import WebSettings
from openpista_web.testing import greeted, next_frame, open_socket

TOKEN = "contract-token-8Rt2"


class TestWebChannelContract(ChannelContract):
    @pytest.fixture(autouse=True)
    def _home(self, web_home: Path) -> None:
        self.sockets: dict[int, Any] = {}
        self.shown: list[str] = []

    async def make_adapter(self) -> ChannelAdapter:
        return create_web_adapter(
            WebSettings.from_table({"enabled": True, "port": 0, "token": TOKEN}), Settings()
        )

    async def deliver(self, adapter: ChannelAdapter, text: str) -> None:
        assert isinstance(adapter, WebAdapter)
        ws = await open_socket(adapter.port, "contract-client", TOKEN).__aenter__()
        self.sockets[id(adapter)] = ws
        await greeted(ws)
        await ws.send(json.dumps({"type": "message", "text": text}))
        asyncio.get_running_loop().create_task(self._collect(ws))

    async def _collect(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            while True:
                response = (await next_frame(ws, "response", wait=30))["response"]
                shown = response["request"]["id"] if response["kind"] == "approval" else None
                self.shown.append(shown or response["text"])
        except (ConnectionClosed, TimeoutError):
            return

    async def received(self, adapter: ChannelAdapter) -> list[str]:
        return self.shown


def test_factory_generates_a_token_when_none_is_configured(web_home: Path) -> None:
    adapter = create_web_adapter(WebSettings.from_table({"enabled": True}), Settings())
    assert isinstance(adapter, WebAdapter)
    assert token_file().read_text().strip()
    assert adapter.settings.port == 8765


def test_factory_reads_the_environment(web_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENPISTA_WEB_PORT", "9100")
    monkeypatch.setenv("OPENPISTA_WEB_TOKEN", "env-token")
    adapter = create_web_adapter(WebSettings.from_table({"enabled": True}), Settings())
    assert isinstance(adapter, WebAdapter)
    assert adapter.settings.port == 9100
    assert not token_file().exists()


@pytest.fixture
def web_cli(tmp_path: Path) -> Cli:
    cli = Cli.isolated(tmp_path)
    cli.env["OPENPISTA_LOAD_PLUGINS"] = "web"
    return cli


@pytest.mark.e2e
def test_web_link_prints_a_sign_in_link(web_cli: Cli) -> None:
    web_cli.write_config('[channels.web]\nenabled = true\nhost = "0.0.0.0"\nport = 8800\n')
    done = web_cli("web", "link", "--host", "phone.lan")
    assert done.returncode == 0, done.stderr
    stored = (web_cli.home / ".openpista" / "web" / "token").read_text().strip()
    assert done.stdout.strip() == f"http://phone.lan:8800/#token={stored}"
    again = web_cli("web", "link")
    assert again.stdout.strip() == f"http://localhost:8800/#token={stored}"
    rotated = web_cli("web", "token", "--rotate")
    assert rotated.returncode == 0
    assert rotated.stdout.strip() != stored
    assert web_cli("web", "token").stdout.strip() == rotated.stdout.strip()


@pytest.mark.e2e
def test_web_commands_explain_config_errors(web_cli: Cli) -> None:
    web_cli.write_config("[channels.web]\nport = -5\n")
    done = web_cli("web", "link")
    assert done.returncode == 2
    assert "[channels.web] port: " in done.stderr
    helped = web_cli("web", "--help").stdout
    assert "link" in helped
    assert "token" in helped
