"""End to end: real ``openpista start`` replicas on one real PostgreSQL server, the LLM
emulator, real ``openpista run`` clients on each replica's control socket."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openpista.control.client import ControlClient
from openpista_testing.cli import OPENPISTA, Cli
from openpista_testing.daemon import DEADLINE, Daemon
from openpista_testing.emulator import LlmEmulator, Reply, ToolCallsReply

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]


@dataclass
class Replica:
    cli: Cli
    daemon: Daemon


Start = Callable[..., Replica]


def text_of(content: Any) -> str:
    if isinstance(content, str) or content is None:
        return content or ""
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def asked(body: dict[str, Any]) -> str:
    """The last user message of an LLM request."""
    return [text_of(m["content"]) for m in body["messages"] if m["role"] == "user"][-1]


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    """A directory where blocked tool calls say they started and wait for ``go`` (all of
    them) or ``NAME.go`` (``block-NAME``'s)."""
    directory = tmp_path / "gate"
    directory.mkdir()
    yield directory
    (directory / "go").touch()  # the tool loops of killed replicas end too


@pytest.fixture
def scripted(llm_emulator: LlmEmulator, gate: Path) -> LlmEmulator:
    """``block-NAME`` runs a tool that waits for the gate; the rest is answered at once."""

    def reply(body: dict[str, Any]) -> Reply | str:
        question = asked(body)
        if question.startswith("block-") and body["messages"][-1]["role"] == "user":
            command = (
                f"touch {gate}/{question}.started; "
                f"for i in $(seq 1200); do [ -f {gate}/go ] || [ -f {gate}/{question}.go ] "
                "&& exit 0; sleep 0.05; done"
            )
            return ToolCallsReply([("system_run", {"command": command})])
        return f"answer to {question}"

    llm_emulator.default_reply = reply
    return llm_emulator


@pytest.fixture
def replicas(tmp_path: Path, scripted: LlmEmulator, fresh_postgres_url: str) -> Iterator[Start]:
    started: list[Replica] = []

    def start(name: str, extra: str = "") -> Replica:
        cli = Cli.isolated(tmp_path / name, scripted)
        config = cli.config.read_text()
        sqlite = config.split('url = "', 1)[1].split('"', 1)[0]
        cli.write_config(
            config.replace(sqlite, fresh_postgres_url)
            + f'\n[cluster]\nenabled = true\nreplica_id = "{name}"\nheartbeat = 0.2\n{extra}'
        )
        replica = Replica(cli, Daemon(cli, "-v"))
        started.append(replica)
        replica.daemon.wait_for(f"replica {name} joined the cluster")
        replica.daemon.wait_for("openpista serves:")
        return replica

    yield start
    for replica in started:
        replica.daemon.kill()


def spawn(cli: Cli, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(OPENPISTA), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli.env,
    )


def finished(client: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = client.communicate(timeout=DEADLINE)
    return client.returncode, out, err


def until(check: Callable[[], Any]) -> Any:
    end = time.monotonic() + DEADLINE
    while not (value := check()):
        assert time.monotonic() < end, "condition never became true"
        time.sleep(0.05)
    return value


def cluster_status(cli: Cli) -> dict[str, dict[str, Any]]:
    done = cli("status", "--cluster", "--json")
    assert done.returncode == 0, done.stderr
    return {r["replica_id"]: r for r in json.loads(done.stdout)["replicas"]}


def requests_asking(emulator: LlmEmulator, question: str) -> list[dict[str, Any]]:
    return [
        r.json
        for r in emulator.requests
        if r.path.endswith("/chat/completions") and asked(r.json) == question
    ]


def test_one_session_sent_to_two_replicas_at_once_runs_its_turns_one_after_the_other(
    replicas: Start, scripted: LlmEmulator, gate: Path
) -> None:
    a, b = replicas("a"), replicas("b")
    first = spawn(a.cli, "run", "-s", "shared", "-e", "block-first")
    until(lambda: (gate / "block-first.started").exists())  # a's turn runs, holding the lease
    second = spawn(b.cli, "run", "-s", "shared", "-e", "then-second")
    b.daemon.wait_for("session shared is leased by another replica; handed over")
    listed = cluster_status(b.cli)
    assert {name: r["sessions"] for name, r in listed.items()} == {"a": ["shared"], "b": []}
    assert [r["leads"] for r in listed.values()].count(True) == 1
    (gate / "go").touch()
    assert finished(first)[:2] == (0, "answer to block-first\n")
    assert finished(second)[:2] == (0, "answer to then-second\n")
    [request] = requests_asking(scripted, "then-second")  # answered once, after the first
    seen = [(m["role"], text_of(m["content"])) for m in request["messages"]]
    assert ("assistant", "answer to block-first") in seen
    assert len(requests_asking(scripted, "block-first")) == 2  # the tool call, then the answer


def test_a_replica_killed_mid_turn_hands_its_session_to_the_other(
    replicas: Start, gate: Path
) -> None:
    a, b = replicas("a"), replicas("b")
    first = spawn(a.cli, "run", "-s", "moved", "-e", "block-first")
    until(lambda: (gate / "block-first.started").exists())
    second = spawn(b.cli, "run", "-s", "moved", "-e", "then-second")
    b.daemon.wait_for("session moved is leased by another replica; handed over")
    a.daemon.kill()  # SIGKILL mid-turn: PostgreSQL drops its connection and its leases
    assert finished(second)[:2] == (0, "answer to then-second\n")
    code, _, err = finished(first)
    assert code == 1
    assert err.count("❌") == 1
    until(lambda: cluster_status(b.cli).get("b", {}).get("leads"))  # b took cron over
    assert list(cluster_status(b.cli)) == ["b"]


def test_cron_fires_on_one_replica_and_moves_when_it_dies(
    replicas: Start, scripted: LlmEmulator
) -> None:
    def cron(name: str) -> str:
        return (
            f'\n[[cron]]\nschedule = "* * * * * *"\nchannel = "cron:ticks"\n'
            f'message = "tick from {name}"\n'
        )

    a = replicas("a", cron("a"))
    until(lambda: requests_asking(scripted, "tick from a"))  # a leads: it joined first
    b = replicas("b", cron("b"))  # its scheduler runs once it serves
    ticks = len(requests_asking(scripted, "tick from a"))
    until(lambda: len(requests_asking(scripted, "tick from a")) >= ticks + 3)
    assert requests_asking(scripted, "tick from b") == []  # every second, but not on b
    assert b.daemon.process.poll() is None
    a.daemon.kill()
    until(lambda: len(requests_asking(scripted, "tick from b")) >= 2)


def ask(socket_path: Path, session: str, text: str) -> str:
    """One turn through a replica's control socket; returns the answer's text."""
    client = ControlClient.connect(socket_path)
    assert client is not None, f"no replica listens on {socket_path}"
    try:
        client.send({"type": "run", "text": text, "session": session})
        while True:
            frame = client.receive()
            message = frame.get("message") or {}
            if frame["type"] == "outbound" and message.get("kind") == "answer":
                return str(message["text"])
            assert frame["type"] == "outbound", frame
    finally:
        client.close()


def test_sessions_sent_to_three_replicas_at_once_are_answered_once_each_one_turn_at_a_time(
    replicas: Start, scripted: LlmEmulator
) -> None:
    started = [replicas(name) for name in ("a", "b", "c")]
    sockets = [r.cli.home / ".openpista" / "control.sock" for r in started]
    sessions, per_session = 20, 3
    jobs = [
        (sockets[k], f"s{s}", f"s{s}-m{k}") for s in range(sessions) for k in range(per_session)
    ]
    with ThreadPoolExecutor(len(jobs)) as pool:  # every message at once, on every replica
        answers = list(pool.map(lambda job: ask(*job), jobs))
    assert answers == [f"answer to {text}" for _, _, text in jobs]
    for s in range(sessions):
        asked_in = [
            [text_of(m["content"]) for m in r.json["messages"] if m["role"] == "user"]
            for r in scripted.requests
            if r.path.endswith("/chat/completions") and asked(r.json).startswith(f"s{s}-")
        ]
        # One turn at a time: each turn saw every earlier turn of its session, stored.
        assert sorted(len(users) for users in asked_in) == list(range(1, per_session + 1))
        longest = max(asked_in, key=len)
        assert sorted(longest) == [f"s{s}-m{k}" for k in range(per_session)]
        for users in asked_in:
            assert users == longest[: len(users)]


def users_asked(emulator: LlmEmulator, prefix: str) -> list[list[str]]:
    """The user messages of each LLM request whose question starts with ``prefix``."""
    return [
        [text_of(m["content"]) for m in r.json["messages"] if m["role"] == "user"]
        for r in emulator.requests
        if r.path.endswith("/chat/completions") and asked(r.json).startswith(prefix)
    ]


def test_messages_handed_to_a_replica_killed_mid_turn_run_once_on_another_in_order(
    replicas: Start, scripted: LlmEmulator, gate: Path
) -> None:
    a, b, c = replicas("a"), replicas("b"), replicas("c")
    first = spawn(a.cli, "run", "-s", "moved", "-e", "block-first")
    until(lambda: (gate / "block-first.started").exists())  # a holds the session's lease
    second = spawn(b.cli, "run", "-s", "moved", "-e", "from-b")
    b.daemon.wait_for("session moved is leased by another replica; handed over")
    third = spawn(c.cli, "run", "-s", "moved", "-e", "from-c")
    c.daemon.wait_for("session moved is leased by another replica; handed over")
    a.daemon.kill()  # SIGKILL mid-turn: the stored messages stay, the lease goes
    assert finished(second)[:2] == (0, "answer to from-b\n")
    assert finished(third)[:2] == (0, "answer to from-c\n")
    assert finished(first)[0] == 1  # its connection went with a: told, and not run again
    assert len(requests_asking(scripted, "block-first")) == 1
    [for_b] = users_asked(scripted, "from-b")
    [for_c] = users_asked(scripted, "from-c")
    assert for_c == [*for_b, "from-c"]  # in the order stored, each once
    assert for_b[-1] == "from-b"
    dropped = "❌ a message of session moved is dropped: replica a"
    assert dropped in b.daemon.output() + c.daemon.output()


def test_300_sessions_of_5_messages_moving_between_3_replicas_are_answered_once_in_order(
    replicas: Start, scripted: LlmEmulator
) -> None:
    started = [replicas(name) for name in ("a", "b", "c")]
    sockets = [r.cli.home / ".openpista" / "control.sock" for r in started]
    sessions, per_session = 300, 5

    def talk(s: int) -> list[str]:  # message k of session s goes to replica (s + k) mod 3
        return [ask(sockets[(s + k) % 3], f"s{s}", f"s{s}-m{k}") for k in range(per_session)]

    with ThreadPoolExecutor(sessions) as pool:
        answers = list(pool.map(talk, range(sessions)))
    assert answers == [
        [f"answer to s{s}-m{k}" for k in range(per_session)] for s in range(sessions)
    ]
    asked_in: dict[str, list[list[str]]] = {}  # session -> the user messages of each request
    for users in users_asked(scripted, "s"):
        asked_in.setdefault(users[-1].split("-")[0], []).append(users)
    for s in range(sessions):
        # Each message answered once, having seen every earlier one of its session in order.
        expected = [[f"s{s}-m{k}" for k in range(n + 1)] for n in range(per_session)]
        assert asked_in.pop(f"s{s}") == expected
    assert asked_in == {}


def test_ctrl_c_on_one_replica_stops_the_turn_where_it_runs_or_waits(
    replicas: Start, scripted: LlmEmulator, gate: Path
) -> None:
    a, b = replicas("a"), replicas("b")
    first = spawn(a.cli, "run", "-s", "shared", "-e", "block-first")
    until(lambda: (gate / "block-first.started").exists())  # a holds the session's lease
    waiting = spawn(b.cli, "run", "-s", "shared", "-e", "block-waiting")
    b.daemon.wait_for("session shared is leased by another replica; handed over")
    running = spawn(b.cli, "run", "-s", "shared", "-e", "block-running")
    b.daemon.wait_for("session shared is leased by another replica; handed over")
    waiting.send_signal(signal.SIGINT)  # Ctrl-C while it waits in the inbox: never runs
    code, _, err = finished(waiting)
    assert (code, err.strip()) == (130, "❌ cancelled: the turn was stopped in the daemon")
    (gate / "block-first.go").touch()
    assert finished(first)[:2] == (0, "answer to block-first\n")
    until(lambda: (gate / "block-running.started").exists())  # runs on a, answers b
    running.send_signal(signal.SIGINT)  # Ctrl-C on b: a stops the turn
    code, _, err = finished(running)
    *progress, last = err.strip().splitlines()
    assert (code, last) == (130, "❌ cancelled: the turn was stopped in the daemon")
    assert progress[0].startswith("⚙ system.run")  # its tool's start, streamed from a
    a.daemon.wait_for("session shared: a turn was cancelled by its user")
    # Its tool never finished (no gate opened), yet the session takes the next turn.
    assert finished(spawn(b.cli, "run", "-s", "shared", "-e", "after"))[:2] == (
        0,
        "answer to after\n",
    )
    assert requests_asking(scripted, "block-waiting") == []
    assert len(requests_asking(scripted, "block-running")) == 1  # the tool call only
    [after] = requests_asking(scripted, "after")
    assert "answer to block-running" not in json.dumps(after["messages"])


def test_a_budget_set_on_one_replica_applies_on_the_others_at_once(replicas: Start) -> None:
    a, b = replicas("a"), replicas("b")

    def daily(cli: Cli) -> Any:
        done = cli("budget", "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["daily"]

    assert daily(b.cli)["usd"] is None  # read (and kept) by b before the change
    done = a.cli("budget", "set", "--daily", "0.5")
    assert done.returncode == 0, done.stderr
    until(lambda: daily(b.cli) == {"usd": 0.5, "set": True, "spent_today": 0.0})
    assert a.cli("budget", "unset", "--daily").returncode == 0
    until(lambda: daily(b.cli)["set"] is False)
