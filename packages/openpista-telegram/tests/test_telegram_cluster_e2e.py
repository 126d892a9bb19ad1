"""Cluster mode end to end with a replica killed mid-turn (docs/scale-out.md, "A replica dies
mid-turn"): real ``openpista start`` replicas on one real PostgreSQL, each serving the
Telegram webhook; the Bot API emulator is shared, the LLM emulator scripts the turns.

Telegram posts an update to one replica (what a load balancer in front of them does); that
replica stores it and runs its turn, and is killed (SIGKILL) in the middle of it. Another
replica takes the session over and continues the turn from what was stored, answering the
chat over the Bot API from where it runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openpista_telegram.testing import SECRET_HEADER, TelegramEmulator, User
from openpista_testing.emulator import LlmEmulator, Reply, TextReply, ToolCallsReply
from openpista_testing.ports import free_port
from openpista_testing.postgres import PostgresServer
from openpista_testing.replicas import ClusterReplicas, Replica, fresh_cluster

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

SECRET = "cluster_webhook_Secret-42"  # the same on every replica: Telegram knows one
INTERRUPTED = "❌ interrupted: this tool call was still running"
HELD = 120.0  # s the LLM emulator holds the answer of a killed replica's request


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def cluster(
    tmp_path: Path, llm_emulator: LlmEmulator, postgres: PostgresServer
) -> Iterator[ClusterReplicas]:
    with fresh_cluster(postgres, tmp_path, llm_emulator, "telegram") as replicas:
        yield replicas


def telegram_replica(
    cluster: ClusterReplicas, name: str, telegram: TelegramEmulator, alice: User
) -> tuple[Replica, str]:
    """Replica ``name`` serving the webhook on a port of its own; returns it and the URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    extra = f"""
[policy]
remote = "allow"

[channels.telegram]
enabled = true
token = "{telegram.token}"
api_base = "{telegram.base_url}"
allowed_users = [{alice.id}]
mode = "webhook"
webhook_url = "{url}"
webhook_port = {port}
webhook_path = "/hook"
webhook_secret = "{SECRET}"
retry_base_delay = 0.01
"""
    registered = len(telegram.webhook_calls)
    replica = cluster.start(name, extra=extra, plugins="telegram")
    replica.daemon.wait_until(lambda: len(telegram.webhook_calls) > registered)  # listens
    return replica, url


def last_user_text(body: dict[str, Any]) -> str:
    return str([m for m in body["messages"] if m["role"] == "user"][-1]["content"])


def completions(emulator: LlmEmulator) -> list[list[dict[str, Any]]]:
    """The messages of every chat request the LLM emulator received, in order."""
    return [r.json["messages"] for r in emulator.requests if r.path.endswith("/completions")]


def tool_results(messages: list[dict[str, Any]]) -> dict[str, str]:
    """Call id -> result of each tool call in ``messages``, which must all be answered."""
    calls = [c["id"] for m in messages for c in m.get("tool_calls") or []]
    results = {m["tool_call_id"]: m["content"] for m in messages if m["role"] == "tool"}
    assert list(results) == calls
    return results


def stored(replica: Replica, chat: str) -> list[dict[str, Any]]:
    """The messages stored in the session of ``chat``, as ``openpista memory export`` has them."""
    listed = replica.cli("sessions", "--json")
    assert listed.returncode == 0, listed.stderr
    [session] = [s for s in json.loads(listed.stdout) if chat in json.dumps(s)]
    exported = replica.cli("memory", "export", session["id"])
    assert exported.returncode == 0, exported.stderr
    messages: list[dict[str, Any]] = json.loads(exported.stdout)["messages"]
    return messages


def deliver(telegram: TelegramEmulator, url: str, alice: User, text: str) -> None:
    status = telegram.post(telegram.text_update(alice.id, text, user=alice), url=url)
    assert status == (200, "ok")


def test_a_replica_killed_while_a_tool_runs_leaves_the_turn_to_another_which_does_not_rerun(
    cluster: ClusterReplicas,
    llm_emulator: LlmEmulator,
    telegram: TelegramEmulator,
    alice: User,
    tmp_path: Path,
) -> None:
    runs, started, go = tmp_path / "runs", tmp_path / "started", tmp_path / "go"
    waits = (
        f"echo waiting >> {runs}; touch {started}; "
        f"for i in $(seq 1200); do [ -f {go} ] && exit 0; sleep 0.05; done"
    )

    def reply(body: dict[str, Any]) -> Reply | str:
        last = body["messages"][-1]
        if last["role"] == "user":
            return f"answer to {last['content']}"
        if len(tool_results(body["messages"])) == 1:  # the first round's call is done
            return ToolCallsReply([("system_run", {"command": waits})])
        return "handled"

    llm_emulator.reply(ToolCallsReply([("system_run", {"command": f"echo ran >> {runs}"})]))
    llm_emulator.default_reply = reply
    (a, a_url), (b, b_url) = (
        telegram_replica(cluster, "a", telegram, alice),
        telegram_replica(cluster, "b", telegram, alice),
    )
    try:
        deliver(telegram, a_url, alice, "do both")
        a.daemon.wait_until(started.exists)  # round 1 stored and done, round 2's call runs
        a.daemon.kill()  # SIGKILL mid-call: its lease goes with its PostgreSQL connection
        b.daemon.wait_for("a turn cut short elsewhere continues here")
        b.daemon.wait_until(lambda: len(telegram.texts(alice.id)) == 1)
    finally:
        go.touch()
    assert telegram.texts(alice.id) == ["handled"]
    assert runs.read_text() == "ran\nwaiting\n"  # neither call ran again
    asked = completions(llm_emulator)
    assert [m[-1]["role"] for m in asked] == ["user", "tool", "tool"]  # a, a, then b
    first, second = tool_results(asked[-1]).values()
    assert not first.startswith("❌")  # the finished call's own result
    assert second.startswith(INTERRUPTED)  # told to the LLM, not run again

    deliver(telegram, b_url, alice, "next")
    b.daemon.wait_until(lambda: len(telegram.texts(alice.id)) == 2)
    assert telegram.texts(alice.id) == ["handled", "answer to next"]
    later = completions(llm_emulator)[-1]
    assert [m["content"] for m in later if m["role"] == "user"] == ["do both", "next"]
    history = stored(b, f"telegram:{alice.id}")
    assert [m["content"] for m in history if m["role"] == "user"] == ["do both", "next"]


def test_a_replica_killed_waiting_for_the_llm_after_a_tool_leaves_the_turn_to_another(
    cluster: ClusterReplicas,
    llm_emulator: LlmEmulator,
    telegram: TelegramEmulator,
    alice: User,
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs"
    answered: list[str] = []

    def reply(body: dict[str, Any]) -> Reply | str:
        if body["messages"][-1]["role"] == "user":
            return f"answer to {last_user_text(body)}"
        answered.append(last_user_text(body))  # the first one is a's: held until a is gone
        return TextReply("done after the tool", delay=HELD if len(answered) == 1 else 0)

    llm_emulator.reply(ToolCallsReply([("system_run", {"command": f"echo ran >> {runs}"})]))
    llm_emulator.default_reply = reply
    (a, a_url), (b, _), (c, c_url) = (
        telegram_replica(cluster, name, telegram, alice) for name in ("a", "b", "c")
    )
    forged = telegram.text_update(alice.id, "forged", user=alice)
    refused = [
        telegram.post(forged, headers=headers, url=c_url)[0]
        for headers in ({}, {SECRET_HEADER: SECRET[:-1] + "x"})  # refused before it is read
    ]
    assert refused == [401, 403]
    deliver(telegram, a_url, alice, "look it up")
    a.daemon.wait_until(lambda: answered == ["look it up"])  # the tool ran, the LLM asked
    a.daemon.kill()
    survivors = (b, c)
    survivors[0].daemon.wait_until(lambda: len(telegram.texts(alice.id)) == 1)
    assert telegram.texts(alice.id) == ["done after the tool"]
    assert runs.read_text() == "ran\n"  # the finished call is not run again
    asked = completions(llm_emulator)
    assert [m[-1]["role"] for m in asked] == ["user", "tool", "tool"]
    assert asked[1] == asked[2]  # the same request again, from what a stored
    [result] = tool_results(asked[2]).values()
    assert not result.startswith("❌")

    def took_over() -> list[Replica]:  # its log line may still be on its way to us
        return [r for r in survivors if "cut short elsewhere continues" in r.daemon.output()]

    c.daemon.wait_until(lambda: bool(took_over()))
    assert len(took_over()) == 1

    deliver(telegram, c_url, alice, "and then")
    c.daemon.wait_until(lambda: len(telegram.texts(alice.id)) == 2)
    assert telegram.texts(alice.id) == ["done after the tool", "answer to and then"]
    history = stored(c, f"telegram:{alice.id}")
    users = [m["content"] for m in history if m["role"] == "user"]
    assert users == ["look it up", "and then"]  # stored once each; the forged one never
    listed = c.cli("status", "--cluster", "--json")
    assert listed.returncode == 0, listed.stderr
    status = json.loads(listed.stdout)
    assert status["waiting"] == 0  # nothing left in the inbox
    assert sorted(r["replica_id"] for r in status["replicas"]) == ["b", "c"]
