"""Cluster mode in process: replica ids, session leases across replicas, the cron leader,
a lost lease connection, and the refusal on SQLite (docs/scale-out.md). The daemons
themselves are in test_cluster_e2e.py."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner

from openpista.cli.main import cli
from openpista.cluster import (
    SESSION_SPACE,
    ClusterError,
    ClusterMember,
    cluster_dsn,
    list_replicas,
)
from openpista.config import ClusterSettings, CronEntry, DatabaseSettings, Settings
from openpista.gateway.daemon import serve
from openpista.gateway.router import ChannelRouter
from openpista.memory import MemoryStore
from openpista.scheduler import CronScheduler

pytestmark = pytest.mark.postgres

WAIT = 30.0
HOSTILE_IDS = ["a\x00b", "\ud800lone", "'; DROP TABLE sessions; --", "é" * 5000, ""]


def cluster_settings(url: str, replica_id: str) -> Settings:
    return Settings(
        database=DatabaseSettings(url=url),
        cluster=ClusterSettings(enabled=True, replica_id=replica_id, heartbeat=0.05),
    )


async def until(condition: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while asyncio.get_running_loop().time() < deadline:
        outcome = condition()
        if outcome if isinstance(outcome, bool) else await outcome:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
async def members(
    fresh_postgres_url: str,
) -> AsyncIterator[Callable[[str], Awaitable[ClusterMember]]]:
    async with await MemoryStore.open(fresh_postgres_url):
        pass  # migrated, as a daemon leaves it: status --cluster reads the sessions table
    joined: list[ClusterMember] = []

    async def join(replica_id: str) -> ClusterMember:
        member = await ClusterMember.join(cluster_settings(fresh_postgres_url, replica_id))
        joined.append(member)
        return member

    yield join
    for member in joined:
        await member.close()


def test_cluster_mode_needs_postgresql(tmp_path: Path) -> None:
    settings = cluster_settings(f"sqlite+aiosqlite:///{tmp_path}/memory.db", "a")
    with pytest.raises(ClusterError, match=r"needs a PostgreSQL \[database\] url"):
        cluster_dsn(settings)


async def test_the_daemon_refuses_cluster_mode_on_sqlite_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = cluster_settings(f"sqlite+aiosqlite:///{tmp_path}/memory.db", "a")
    settings.gateway.pid_file = tmp_path / "openpista.pid"
    assert await serve(settings, terminal=False) == 1
    err = capsys.readouterr().err
    assert err.count("❌") == 1
    assert "Traceback" not in err
    assert "[cluster] enabled = true needs a PostgreSQL [database] url" in err
    assert not (tmp_path / "memory.db").exists()  # refused before anything was opened


async def test_an_unreachable_database_is_a_cluster_error() -> None:
    url = "postgresql+asyncpg://nobody@127.0.0.1:1/none"
    with pytest.raises(ClusterError, match="cannot reach the cluster's PostgreSQL"):
        await ClusterMember.join(cluster_settings(url, "a"))


async def test_a_replica_id_runs_once_and_the_first_replica_leads_cron(
    members: Callable[[str], Awaitable[ClusterMember]], fresh_postgres_url: str
) -> None:
    first = await members("a")
    with pytest.raises(ClusterError, match="replica id 'a' is in use by another"):
        await members("a")
    second = await members("b")
    assert (first.leads, second.leads) == (True, False)
    listed = await list_replicas(cluster_settings(fresh_postgres_url, "x"))
    assert [(r.replica_id, r.leads, r.sessions) for r in listed] == [
        ("a", True, []),
        ("b", False, []),
    ]
    await first.close()
    await until(lambda: second.leads, "b took over cron")
    listed = await list_replicas(cluster_settings(fresh_postgres_url, "x"))
    assert [(r.replica_id, r.leads) for r in listed] == [("b", True)]


async def test_one_session_runs_one_turn_at_a_time_across_replicas(
    members: Callable[[str], Awaitable[ClusterMember]],
    fresh_postgres_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "openpista.cluster")
    async with await MemoryStore.open(fresh_postgres_url) as memory:
        session_id = await memory.ensure_channel("test:1", "shared")
        routers = [ChannelRouter(memory, await members(name)) for name in ("a", "b")]
        inside: list[str] = []
        first_may_leave = asyncio.Event()

        async def turn(router: ChannelRouter, name: str) -> None:
            async with router.lock(session_id):
                inside.append(f"{name} in")
                if name == "a":
                    await first_may_leave.wait()
                inside.append(f"{name} out")

        first = asyncio.create_task(turn(routers[0], "a"))
        await until(lambda: inside == ["a in"], "a runs its turn")
        listed = await list_replicas(cluster_settings(fresh_postgres_url, "x"))
        assert [(r.replica_id, r.sessions) for r in listed] == [("a", ["shared"]), ("b", [])]
        second = asyncio.create_task(turn(routers[1], "b"))
        await until(lambda: "is leased by another replica; waiting" in caplog.text, "b waits")
        assert inside == ["a in"]
        other = asyncio.create_task(turn(routers[1], "c"))  # another session is not held up
        first_may_leave.set()
        await asyncio.wait_for(asyncio.gather(first, second, other), WAIT)
        assert inside[:2] == ["a in", "a out"]
        assert inside.count("b in") == 1


async def test_any_string_is_a_lease_key(
    members: Callable[[str], Awaitable[ClusterMember]],
) -> None:
    a, b = await members("a"), await members("b")
    for session_id in HOSTILE_IDS:
        await a.acquire(session_id)
    for session_id in HOSTILE_IDS:
        assert not await b._lock(SESSION_SPACE, session_id), repr(session_id)
    for session_id in HOSTILE_IDS:
        await a.release(session_id)
        await asyncio.wait_for(b.acquire(session_id), WAIT)
        assert not await a._lock(SESSION_SPACE, session_id), repr(session_id)


async def test_a_lost_connection_drops_the_leases_and_the_replica_reconnects(
    members: Callable[[str], Awaitable[ClusterMember]],
    fresh_postgres_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = await members("a"), await members("b")
    reconnections: list[None] = []
    a.on_reconnect(lambda: reconnections.append(None))

    async def turn() -> None:
        await a.acquire("held")
        try:
            await asyncio.Event().wait()  # a long turn
        finally:
            await a.release("held")

    running = asyncio.create_task(turn())
    await until(lambda: "held" in a._holders, "a's turn holds its lease")
    admin = await asyncpg.connect(cluster_dsn(cluster_settings(fresh_postgres_url, "x")))
    try:
        # What a partition looks like once the server gives up on the replica.
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'openpista replica a'"
        )
    finally:
        await admin.close()
    await asyncio.wait_for(b.acquire("held"), WAIT)  # the server released a's lease
    await until(lambda: "replica a lost its PostgreSQL connection" in caplog.text, "a notices")
    with pytest.raises(asyncio.CancelledError):  # it must not go on beside b's turn
        await asyncio.wait_for(running, WAIT)
    assert "the turn of session held is cancelled: its lease is lost" in caplog.text
    await until(lambda: "replica a reconnected" in caplog.text, "a reconnects")
    assert reconnections == [None]  # told once, when it was back
    await until(lambda: a.leads or b.leads, "a replica leads cron again")
    await a.acquire("other")  # a takes turns again
    listed = await list_replicas(cluster_settings(fresh_postgres_url, "x"))
    assert {r.replica_id: r.sessions for r in listed} == {"a": ["?"], "b": ["?"]}
    assert [r.leads for r in listed].count(True) == 1
    assert not (a.leads and b.leads)


async def test_cron_fires_only_on_the_replica_that_leads() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    entry = CronEntry(schedule="* * * * * *", channel="cron:x", message="tick")

    async def fired_with(leads: bool) -> int:
        fired: list[str] = []
        clock = [now]

        async def tick(delay: float) -> None:
            clock[0] += timedelta(seconds=max(delay, 1.0))
            if clock[0] > now + timedelta(seconds=5):
                raise asyncio.CancelledError

        async def dispatch(entry: CronEntry) -> None:
            fired.append(entry.message)

        scheduler = CronScheduler(
            [entry], dispatch, clock=lambda: clock[0], sleep=tick, leads=lambda: leads
        )
        with pytest.raises(asyncio.CancelledError):
            await scheduler.run()
        return len(fired)

    assert await fired_with(False) == 0
    assert await fired_with(True) > 0


EXAMPLE = Path(__file__).resolve().parents[3] / "config.example.toml"


def test_the_example_config_documents_every_cluster_option() -> None:
    text = EXAMPLE.read_text()
    for key in ClusterSettings.model_fields:
        assert re.search(rf"^# {key} =", text, re.M), f"[cluster] {key} is not documented"
    block = text.split("# [cluster]\n", 1)[1].split("\n\n", 1)[0]
    options = "\n".join(line.removeprefix("# ") for line in block.splitlines() if " = " in line)
    documented = ClusterSettings(**tomllib.loads(options))
    assert documented.model_dump(exclude={"replica_id"}) == ClusterSettings().model_dump(
        exclude={"replica_id"}
    )


@pytest.fixture
def config_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "config.toml"
    monkeypatch.setenv("OPENPISTA_CONFIG", str(path))
    monkeypatch.delenv("OPENPISTA_DATABASE_URL", raising=False)

    def write(url: str, extra: str = "") -> None:
        path.write_text(f'[database]\nurl = "{url}"\n[cluster]\nenabled = true\n{extra}')

    return write


@pytest.fixture
def loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop in a thread: replicas stay joined while the CLI runs its own loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(WAIT)
    loop.close()


def test_status_cluster_lists_the_replicas_their_roles_leases_and_the_inbox(
    config_for: Callable[..., None],
    fresh_postgres_url: str,
    loop_thread: asyncio.AbstractEventLoop,
) -> None:
    def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop_thread).result(WAIT)

    config_for(fresh_postgres_url, "[channels.telegram]\nenabled = false\n")
    empty = CliRunner().invoke(cli, ["status", "--cluster"])
    assert empty.exit_code == 3, empty.output
    assert empty.stdout == "no openpista replica is connected to the cluster's database.\n"

    async def join() -> list[ClusterMember]:
        async with await MemoryStore.open(fresh_postgres_url) as memory:
            await memory.ensure_channel("test:1", "busy-session")
        joined = [
            await ClusterMember.join(cluster_settings(fresh_postgres_url, name))
            for name in ("gw-1", "gw-2")
        ]
        await joined[1].acquire("busy-session")
        joined[1].leading("telegram")  # configured: named
        joined[0].leading("discord")  # not configured here: "?"
        await until(lambda: joined[1].leading("telegram"), "gw-2 leads telegram")
        await until(lambda: joined[0].leading("discord"), "gw-1 leads discord")
        conn = await asyncpg.connect(joined[0].dsn)
        try:  # two events wait for their turn
            await conn.execute(
                "INSERT INTO cluster_inbox (session_id, event, origin) "
                "VALUES ('busy-session', '{}', 'gw-2'), ('busy-session', '{}', 'gw-2')"
            )
        finally:
            await conn.close()
        return joined

    joined = run(join())
    try:
        listed = CliRunner().invoke(cli, ["status", "--cluster"])
        as_json = CliRunner().invoke(cli, ["status", "--cluster", "--json"])
    finally:
        for member in joined:
            run(member.close())
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert re.fullmatch(
        r"gw-1: from 127\.0\.0\.1 since \S+ \S+ UTC, 0 turn\(s\) running, leads: \?, cron",
        lines[0],
    )
    assert re.fullmatch(
        r"gw-2: from 127\.0\.0\.1 since \S+ \S+ UTC, 1 turn\(s\) running, leads: telegram",
        lines[1],
    )
    assert lines[2:] == ["  lease: busy-session", "inbox: 2 event(s) waiting"]
    assert as_json.exit_code == 0, as_json.output
    shown = json.loads(as_json.stdout)
    assert shown["waiting"] == 2
    assert [
        (r["replica_id"], r["leads"], r["roles"], r["sessions"]) for r in shown["replicas"]
    ] == [
        ("gw-1", True, ["?", "cron"], []),
        ("gw-2", False, ["telegram"], ["busy-session"]),
    ]


def test_status_cluster_on_sqlite_is_one_error_line(
    config_for: Callable[..., None], tmp_path: Path
) -> None:
    config_for(f"sqlite+aiosqlite:///{tmp_path}/memory.db")
    done = CliRunner().invoke(cli, ["status", "--cluster"])
    assert done.exit_code == 1
    assert done.stderr.count("❌") == 1
    assert "needs a PostgreSQL [database] url" in done.stderr
    assert done.exception is None or isinstance(done.exception, SystemExit)


async def test_a_chat_moved_on_one_replica_is_on_its_new_session_on_the_others(
    members: Callable[[str], Awaitable[ClusterMember]], fresh_postgres_url: str
) -> None:
    async with await MemoryStore.open(fresh_postgres_url) as memory:
        a = ChannelRouter(memory, await members("a"))
        b = ChannelRouter(memory, await members("b"))
        first = await a.session_for("web:alice")
        assert await b.session_for("web:alice") == first
        moved = await a.new_session("web:alice")  # /new on replica a
        assert moved != first
        assert await b.session_for("web:alice") == moved


async def test_a_turn_cancelled_while_it_waits_for_the_lease_leaves_nothing_held(
    members: Callable[[str], Awaitable[ClusterMember]],
    fresh_postgres_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "openpista.cluster")
    a, b = await members("a"), await members("b")
    async with await MemoryStore.open(fresh_postgres_url) as memory:
        router = ChannelRouter(memory, b)
        await a.acquire("s")

        async def turn() -> None:
            async with router.lock("s"):
                raise AssertionError("b ran a turn while a held the lease")

        waiting = asyncio.create_task(turn())
        await until(lambda: "session s is leased by another replica" in caplog.text, "b waits")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert router._locks == {}  # the local turn lock is gone too
        await a.release("s")
        await until(lambda: not b._returning, "b gave back whatever it was granted")
        assert await a._lock(SESSION_SPACE, "s")  # b holds nothing of s


async def test_a_released_lease_wakes_the_replica_waiting_for_it(
    members: Callable[[str], Awaitable[ClusterMember]],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("openpista.cluster.RETRY_AFTER", 3600.0)  # no polling: only the notice
    caplog.set_level(logging.INFO, "openpista.cluster")
    a, b = await members("a"), await members("b")
    for session_id in ("plain", HOSTILE_IDS[3]):  # a long id: its notice is a digest
        await a.acquire(session_id)
        waiting = asyncio.create_task(b.acquire(session_id))
        await until(lambda: caplog.text.count("is leased by another replica") > 0, "b waits")
        caplog.clear()
        await a.release(session_id)
        await asyncio.wait_for(waiting, WAIT)
        await b.release(session_id)
    assert b._wakers == {}


class Cable:
    """A TCP relay to PostgreSQL that can be cut (bytes stop, sockets stay open: a network
    partition) and then unplugged (the server side closes, as the server's keepalive would)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                await self.flowing.wait()
                sink.write(data)
                await sink.drain()

        await asyncio.gather(
            pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True
        )

    async def unplug(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        self.flowing.set()  # the relays see the closed sockets and end


async def test_a_partitioned_replica_stops_its_turn_before_the_server_frees_the_session(
    members: Callable[[str], Awaitable[ClusterMember]],
    fresh_postgres_url: str,
    postgres_server: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("openpista.cluster.QUERY_TIMEOUT", 1.0)
    cable = Cable(postgres_server.port)
    relayed = fresh_postgres_url.replace(f":{postgres_server.port}/", f":{await cable.start()}/")
    a = await ClusterMember.join(cluster_settings(relayed, "a"))
    b = await members("b")
    try:

        async def turn() -> None:
            await a.acquire("cut")
            try:
                await asyncio.Event().wait()
            finally:
                await a.release("cut")

        running = asyncio.create_task(turn())
        await until(lambda: "cut" in a._holders, "a's turn holds its lease")
        cable.flowing.clear()  # the partition: nothing gets through, nothing closes
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(running, WAIT)
        assert "the turn of session cut is cancelled: its lease is lost" in caplog.text
        assert not await b._lock(SESSION_SPACE, "cut")  # the server still counts a's lease
        await cable.unplug()  # the server's keepalive gives up on a
        await asyncio.wait_for(b.acquire("cut"), WAIT)
    finally:
        await cable.unplug()
        await a.close()


async def test_a_role_asked_for_is_played_by_one_replica_and_moves_when_it_dies(
    members: Callable[[str], Awaitable[ClusterMember]],
) -> None:
    a, b = await members("a"), await members("b")
    assert not a.leading("telegram")  # a candidate from now on: the heartbeat takes it
    await until(lambda: a.leading("telegram"), "a leads telegram")
    assert not b.leading("telegram")
    moved = asyncio.create_task(b.changed("telegram"))
    assert (a.leads, b.leads) == (True, False)
    await a.close()  # the role goes with a's connection
    await asyncio.wait_for(moved, WAIT)
    assert b.leading("telegram")
    listed = await list_replicas(cluster_settings_of(b))
    assert [(r.replica_id, r.leads) for r in listed] == [("b", True)]  # b leads cron too


async def test_status_says_leads_only_of_cron(
    members: Callable[[str], Awaitable[ClusterMember]],
) -> None:
    a = await members("a")
    b = await members("b")
    b.leading("telegram")
    await until(lambda: b.leading("telegram"), "b leads telegram")
    listed = await list_replicas(cluster_settings_of(a))
    assert [(r.replica_id, r.leads) for r in listed] == [("a", True), ("b", False)]


def cluster_settings_of(member: ClusterMember) -> Settings:
    return Settings(database=DatabaseSettings(url=member.dsn), cluster=ClusterSettings())


@pytest.mark.parametrize("fired_before", [False, True], ids=["missed", "fired-by-old-leader"])
async def test_the_last_run_due_while_no_replica_led_fires_once_when_one_leads(
    fired_before: bool,
) -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    entry = CronEntry(schedule="* * * * * *", channel="cron:x", message="tick")
    second = timedelta(seconds=1)
    clock = [now]
    recorded = {now + 3 * second} if fired_before else set()  # by the leader that died
    claimed: list[datetime] = []
    fired: list[str] = []

    async def tick(delay: float) -> None:  # wakes every half second at most
        await asyncio.sleep(0)  # the runs fired go first, as in a real sleep
        clock[0] += timedelta(seconds=min(max(delay, 0.25), 0.5))
        if clock[0] > now + 6 * second:
            raise asyncio.CancelledError

    async def claim(key: str, due: datetime) -> bool:
        assert key == "#0\x1f* * * * * *\x1fcron:x\x1ftick"
        if due in recorded:
            return False
        recorded.add(due)
        claimed.append(due)
        return True

    async def dispatch(entry: CronEntry) -> None:
        fired.append(entry.message)

    scheduler = CronScheduler(
        [entry],
        dispatch,
        clock=lambda: clock[0],
        sleep=tick,
        leads=lambda: clock[0] >= now + 3.5 * second,  # this replica leads from 3.5 s on
        claim=claim,
    )
    with pytest.raises(asyncio.CancelledError):
        await scheduler.run()
    later = [now + k * second for k in (4, 5, 6)]
    assert claimed == (later if fired_before else [now + 3 * second, *later])
    assert len(fired) == len(claimed)  # 1 s and 2 s are not replayed: the last missed run is


async def test_a_cron_run_is_claimed_once_across_replicas(
    members: Callable[[str], Awaitable[ClusterMember]],
) -> None:
    a, b = await members("a"), await members("b")
    due = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert await a.claim_run("tick", due)
    assert not await b.claim_run("tick", due)  # fired already, on a
    assert not await b.claim_run("tick", due - timedelta(seconds=1))  # an older run
    assert await b.claim_run("tick", due + timedelta(seconds=1))
    for hostile in HOSTILE_IDS[2:]:  # NUL and lone surrogates are no PostgreSQL text
        assert await a.claim_run(hostile, due)
