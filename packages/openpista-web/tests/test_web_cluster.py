"""Cluster mode end to end: two ``openpista start`` replicas with the web channel on one real
PostgreSQL; a browser's socket on replica a, its session leased by replica b
(docs/scale-out.md)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openpista_testing.daemon import DEADLINE
from openpista_testing.emulator import LlmEmulator
from openpista_testing.ports import free_port
from openpista_testing.postgres import PostgresServer
from openpista_testing.replicas import ClusterReplicas, Replica, gated_turns, gates
from openpista_web.testing import greeted, next_frame, open_socket

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

TOKEN = "cluster-token-7pQ2vXs9"
ALICE = "alice-browser"  # one browser, a tab on each replica
STREAMED = "streamed by replica b to the browser on replica a"
PIXEL = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    with gates(tmp_path) as directory:
        yield directory


@pytest.fixture
def cluster(tmp_path: Path, llm_emulator: LlmEmulator, gate: Path) -> Iterator[ClusterReplicas]:
    llm_emulator.default_reply = gated_turns(gate, {"second": STREAMED})
    with PostgresServer() as server:
        replicas = ClusterReplicas(tmp_path, llm_emulator, server.create_database("web"))
        try:
            yield replicas
        finally:
            replicas.close()


def web_replica(cluster: ClusterReplicas, name: str) -> tuple[Replica, int]:
    port = free_port()
    web = f'[channels.web]\nenabled = true\nport = {port}\ntoken = "{TOKEN}"\n'
    web += '[policy]\nremote = "allow"\n'  # the browser's tools run without asking
    return cluster.start(name, extra=web, plugins="web"), port


async def started(path: Path) -> None:
    async with asyncio.timeout(DEADLINE):
        while not await asyncio.to_thread(path.exists):  # noqa: ASYNC110 (another process)
            await asyncio.sleep(0.05)


async def responses_until_answer(ws: Any) -> list[dict[str, Any]]:
    """The outbound messages on ``ws`` up to its next answer."""
    seen = [(await next_frame(ws, "response", DEADLINE))["response"]]
    while seen[-1]["kind"] != "answer":
        seen.append((await next_frame(ws, "response", DEADLINE))["response"])
    return seen


async def test_an_upload_through_one_replica_runs_and_streams_on_the_one_leasing_its_session(
    cluster: ClusterReplicas, llm_emulator: LlmEmulator, gate: Path
) -> None:
    (a, a_port), (b, b_port) = web_replica(cluster, "a"), web_replica(cluster, "b")
    async with open_socket(b_port, ALICE, TOKEN) as on_b:
        await greeted(on_b)
        await on_b.send(json.dumps({"type": "message", "text": "the first"}))
        await started(gate / "first.started")  # b runs alice's turn: it holds the lease
        async with open_socket(a_port, ALICE, TOKEN) as on_a:
            await greeted(on_a)
            image = {"name": "dot.png", "mime_type": "image/png", "data": PIXEL}
            message = {"type": "message", "text": "the second", "attachments": [image]}
            await on_a.send(json.dumps(message))
            handed = "is leased by another replica; handed over"
            await asyncio.to_thread(a.daemon.wait_for, handed)
            (gate / "first.go").touch()
            assert [m["kind"] for m in await responses_until_answer(on_b)][-1] == "answer"
            tool = (await next_frame(on_a, "response", DEADLINE))["response"]
            assert (tool["kind"], tool["result"]) == ("tool", None)  # while the tool runs on b
            (gate / "second.go").touch()
            seen = [tool, *await responses_until_answer(on_a)]
    kinds = [m["kind"] for m in seen]
    assert kinds[:2] == ["tool", "tool"]
    assert kinds[-1] == "answer"
    assert set(kinds[2:-1]) == {"chunk"}
    assert "".join(m["text"] for m in seen[2:-1]) == seen[-1]["text"] == STREAMED
    [asked] = [
        r.json
        for r in llm_emulator.requests
        if r.path.endswith("/chat/completions")
        and r.json["messages"][-1]["role"] == "user"
        and "the second" in json.dumps(r.json["messages"][-1])
    ]
    shown = json.dumps(asked["messages"][-1])
    assert PIXEL in shown  # the LLM sees the picture
    where = b.cli.home / ".openpista" / "web" / "uploads" / "handed-over"
    assert f"at {where}/" in shown  # saved on b, where its turn ran, for its tools
    [saved] = where.glob("*/*-dot.png")
    assert base64.b64encode(saved.read_bytes()).decode() == PIXEL
