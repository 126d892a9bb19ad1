"""The installed plugin in a real ``openpista start``: entry point, factory, config, CLI."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from openpista_testing.cli import OPENPISTA, Cli
from openpista_testing.emulator import LlmEmulator
from openpista_testing.ports import free_port
from openpista_whatsapp.testing import WhatsAppEmulator, signed_post, text_payload

pytestmark = pytest.mark.e2e


def whatsapp_cli(home: Path, llm: LlmEmulator, graph: WhatsAppEmulator, port: int) -> Cli:
    cli = Cli.isolated(home, llm)
    cli.env["OPENPISTA_LOAD_PLUGINS"] = "whatsapp"
    cli.env["WHATSAPP_ACCESS_TOKEN"] = "daemon-token"
    cli.env["WHATSAPP_APP_SECRET"] = "daemon-secret"
    cli.config.write_text(
        cli.config.read_text()
        + f"""
[channels.cli]
enabled = false

[channels.whatsapp]
enabled = true
phone_number_id = "111111"
verify_token = "daemon-verify"
webhook_host = "127.0.0.1"
webhook_port = {port}
base_url = "{graph.base_url}"
allowed_numbers = ["+4915550001"]
recipient_interval = 0
"""
    )
    return cli


def test_plugin_module_import_is_cheap() -> None:
    code = (
        "import sys, openpista_whatsapp.plugin; "
        "print(sorted(m for m in ('uvicorn', 'starlette', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_pair_command_prints_a_working_code(tmp_path: Path, llm_emulator: LlmEmulator) -> None:
    cli = Cli.isolated(tmp_path, llm_emulator)
    cli.env["OPENPISTA_LOAD_PLUGINS"] = "whatsapp"
    shown = cli("whatsapp", "pair", "--ttl", "60")
    assert shown.returncode == 0, shown.stderr
    code = re.search(r"Pairing code: (\w+)", shown.stdout)
    assert code is not None
    from openpista.access import PairingBook

    book = PairingBook("whatsapp", tmp_path / ".openpista" / "access" / "whatsapp.json")
    assert book.redeem("15550001111", code.group(1))


async def test_openpista_start_serves_whatsapp(tmp_path: Path, llm_emulator: LlmEmulator) -> None:
    with WhatsAppEmulator(access_token="daemon-token", phone_number_ids=["111111"]) as graph:
        port = free_port()
        cli = whatsapp_cli(tmp_path, llm_emulator, graph, port)
        llm_emulator.reply_text("answered by the daemon")
        daemon = await asyncio.create_subprocess_exec(
            str(OPENPISTA),
            "start",
            "--no-terminal",
            env=cli.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}/webhook"
            async with httpx.AsyncClient(timeout=5) as http:
                await wait_listening(http, url, daemon)
                body, headers = signed_post(
                    text_payload("111111", "4915550001", "hello daemon"), "daemon-secret"
                )
                assert (await http.post(url, content=body, headers=headers)).status_code == 200
                (sent,) = await graph.wait_for_sent(1, wait=60)
                assert sent.body["text"]["body"] == "answered by the daemon"
        finally:
            daemon.send_signal(signal.SIGTERM)
            output = (await asyncio.wait_for(daemon.communicate(), 60))[0].decode()
        assert daemon.returncode == 0, output
        assert "daemon-token" not in output
        assert "daemon-secret" not in output


async def wait_listening(http: httpx.AsyncClient, url: str, daemon: Any) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "daemon-verify", "hub.challenge": "ok"}
    for _ in range(600):
        if daemon.returncode is not None:
            raise AssertionError(f"the daemon exited with {daemon.returncode}")
        try:
            answer = await http.get(url, params=query)
        except httpx.TransportError:
            await asyncio.sleep(0.1)
            continue
        assert answer.text == "ok"
        return
    raise AssertionError("the webhook never listened")
