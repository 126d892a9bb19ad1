"""End to end: a turn run by the replica leasing its session streams its text chunks and
tool progress to the user's connection on another replica (docs/scale-out.md)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from openpista.control.client import ControlClient
from openpista_testing.cli import OPENPISTA
from openpista_testing.daemon import DEADLINE
from openpista_testing.emulator import LlmEmulator
from openpista_testing.replicas import ClusterReplicas, gated_turns, gates

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

STREAMED = "written on replica b, three letters at a time, read on replica a"


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    with gates(tmp_path) as directory:
        yield directory


@pytest.fixture
def cluster(
    tmp_path: Path, llm_emulator: LlmEmulator, fresh_postgres_url: str, gate: Path
) -> Iterator[ClusterReplicas]:
    llm_emulator.default_reply = gated_turns(gate, {"second": STREAMED})
    replicas = ClusterReplicas(tmp_path, llm_emulator, fresh_postgres_url)
    yield replicas
    replicas.close()


def until(path: Path) -> None:
    end = time.monotonic() + DEADLINE
    while not path.exists():
        assert time.monotonic() < end, f"{path.name} never appeared"
        time.sleep(0.05)


def test_a_turn_run_on_the_leasing_replica_streams_to_the_control_client_of_another(
    cluster: ClusterReplicas, gate: Path
) -> None:
    a, b = cluster.start("a"), cluster.start("b")
    first = subprocess.Popen(
        [str(OPENPISTA), "run", "-s", "shared", "-e", "the first"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=b.cli.env,
    )
    until(gate / "first.started")  # b runs a turn of "shared": it holds the lease
    client = ControlClient.connect(a.control_socket)
    assert client is not None
    client.socket.settimeout(DEADLINE)
    try:
        client.send({"type": "run", "text": "the second", "session": "shared"})
        a.daemon.wait_for("session shared is leased by another replica; handed over")
        (gate / "first.go").touch()
        assert first.communicate(timeout=DEADLINE)[0] == "first done\n"
        frames = [client.receive()]  # b runs it now: its tool's start reaches a
        until(gate / "second.started")
        (gate / "second.go").touch()  # only now does the tool end and the LLM write
        while frames[-1].get("message", {}).get("kind") != "answer":
            frames.append(client.receive())
    finally:
        client.close()
    assert {f["type"] for f in frames} == {"outbound"}, frames
    messages = [f["message"] for f in frames]
    assert messages[0]["kind"] == "tool"
    assert messages[0]["result"] is None  # sent while the tool ran
    kinds = [m["kind"] for m in messages]
    assert kinds[:2] == ["tool", "tool"]
    assert kinds[-1] == "answer"
    assert set(kinds[2:-1]) == {"chunk"}
    assert "".join(m["text"] for m in messages[2:-1]) == messages[-1]["text"] == STREAMED
