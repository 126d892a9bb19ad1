"""The history API, the live feed WebSocket and ``openpista workers``, on a real endpoint."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from click.testing import CliRunner

from openpista.cli.main import cli as main_cli
from openpista.workers import TaskGrant, WorkerHub
from openpista_testing.cli import Cli
from openpista_testing.workers import API_TOKEN, Endpoint, start_endpoint, stop_endpoint

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
async def endpoint(tmp_path: Path) -> AsyncIterator[Endpoint]:
    started = await start_endpoint(WorkerHub(), f"sqlite+aiosqlite:///{tmp_path}/memory.db")
    yield started
    await stop_endpoint(started)


def envelope(grant: TaskGrant, report_id: str, kind: str = "progress", **fields: Any) -> Any:
    return {"v": 1, "task_id": grant.task_id, "report_id": report_id, "kind": kind, **fields}


async def get(endpoint: Endpoint, path: str, headers: dict[str, str] | None = None) -> Any:
    async with httpx.AsyncClient() as client:
        return await client.get(endpoint.url + path, headers=AUTH if headers is None else headers)


async def three_tasks(endpoint: Endpoint) -> tuple[TaskGrant, TaskGrant, TaskGrant]:
    done, broken, running = endpoint.grant(), endpoint.grant(), endpoint.grant()
    await endpoint.post(done, envelope(done, "1", "started"))
    await endpoint.post(done, envelope(done, "2", log=["compiling", "linking"], percent=50))
    await endpoint.post(done, envelope(done, "3", "finished", exit_code=0, output="built"))
    await endpoint.post(broken, envelope(broken, "1", "failed", exit_code=2, log=["boom"]))
    await endpoint.post(running, envelope(running, "1", "started"))
    await endpoint.reports.flush()
    return done, broken, running


async def test_the_history_lists_tasks_by_status_and_since(endpoint: Endpoint) -> None:
    done, broken, running = await three_tasks(endpoint)
    listed = (await get(endpoint, "/api/workers")).json()["tasks"]
    assert {t["task_id"]: t["status"] for t in listed} == {
        done.task_id: "finished",
        broken.task_id: "failed",
        running.task_id: "running",
    }
    failed = (await get(endpoint, "/api/workers?status=failed")).json()["tasks"]
    assert [(t["task_id"], t["exit_code"]) for t in failed] == [(broken.task_id, 2)]
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert (await get(endpoint, f"/api/workers?since={later}")).json()["tasks"] == []
    earlier = (datetime.now(UTC) - timedelta(hours=1)).timestamp()
    assert len((await get(endpoint, f"/api/workers?since={earlier}")).json()["tasks"]) == 3
    assert all("token" not in json.dumps(t) for t in listed)


async def test_one_task_comes_with_its_reports_and_logs(endpoint: Endpoint) -> None:
    done, _, _ = await three_tasks(endpoint)
    task = (await get(endpoint, f"/api/workers/{done.task_id}")).json()["task"]
    assert task["logs"] == ["compiling", "linking"]
    assert [r["kind"] for r in task["reports"]] == ["started", "progress", "finished"]
    assert (task["status"], task["exit_code"], task["percent"]) == ("finished", 0, 50)
    assert task["reports"][-1]["output"] == "built"
    assert task["duration"] >= 0
    missing = await get(endpoint, "/api/workers/0000000000000000")
    assert missing.status_code == 404


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": API_TOKEN}]
)
async def test_the_history_needs_the_api_token(endpoint: Endpoint, headers: dict[str, str]) -> None:
    grant = endpoint.grant()
    for path in ("/api/workers", f"/api/workers/{grant.task_id}"):
        answer = await get(endpoint, path, headers)
        assert answer.status_code == 401
        assert "tasks" not in answer.json()


async def test_an_empty_api_token_lets_nobody_in(tmp_path: Path) -> None:
    started = await start_endpoint(
        WorkerHub(), f"sqlite+aiosqlite:///{tmp_path}/memory.db", api_token=""
    )
    try:
        for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer x"}):
            assert (await get(started, "/api/workers", headers)).status_code == 401
        stream = started.url.replace("http://", "ws://") + "/api/workers/stream?token="
        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(stream):
                pass
    finally:
        await stop_endpoint(started)


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("status=exploded", "unknown task status"),
        ("since=yesterday", "not a time"),
        ("limit=many", "invalid literal"),
    ],
)
async def test_bad_history_queries_are_one_clear_error(
    endpoint: Endpoint, query: str, problem: str
) -> None:
    answer = await get(endpoint, f"/api/workers?{query}")
    assert answer.status_code == 400
    assert problem in answer.json()["error"]


async def test_the_live_feed_pushes_every_event_of_a_task(endpoint: Endpoint) -> None:
    stream = endpoint.url.replace("http://", "ws://") + "/api/workers/stream"
    before = endpoint.grant()
    async with websockets.connect(stream, additional_headers=AUTH) as feed:
        snapshot = json.loads(await asyncio.wait_for(feed.recv(), 30))
        assert snapshot["event"] == "snapshot"
        await endpoint.reports.flush()
        grant = endpoint.grant()
        await endpoint.post(grant, envelope(grant, "1", "started"))
        await endpoint.post(grant, envelope(grant, "2", log=["line"], percent=25.5))
        await endpoint.post(grant, envelope(grant, "3", "finished", exit_code=0, output="ok"))
        endpoint.hub.revoke(grant.task_id)
        events: list[dict[str, Any]] = []
        while len(events) < 5:
            event = json.loads(await asyncio.wait_for(feed.recv(), 30))
            if event["task_id"] == grant.task_id:
                events.append(event)
    assert [e["event"] for e in events] == ["created", "started", "progress", "finished", "ended"]
    assert (events[2]["log"], events[2]["percent"]) == (["line"], 25.5)
    assert (events[3]["exit_code"], events[3]["output"]) == (0, "ok")
    assert {e["session_id"] for e in events} == {"session-1"}
    assert {e["channel_id"] for e in events} == {"cli:local"}

    # The query-string token (browsers cannot set headers) works too; the snapshot lists
    # the running tasks.
    async with websockets.connect(f"{stream}?token={API_TOKEN}") as feed:
        snapshot = json.loads(await asyncio.wait_for(feed.recv(), 30))
    assert [t["task_id"] for t in snapshot["tasks"]] == [before.task_id]


@pytest.mark.parametrize("suffix", ["", "?token=wrong", "?token="])
async def test_the_live_feed_refuses_a_wrong_token(endpoint: Endpoint, suffix: str) -> None:
    stream = endpoint.url.replace("http://", "ws://") + "/api/workers/stream" + suffix
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(stream):
            pass
    assert refused.value.response.status_code == 403


async def test_openpista_workers_lists_and_shows_the_stored_tasks(
    endpoint: Endpoint, tmp_path: Path
) -> None:
    done, broken, _ = await three_tasks(endpoint)
    cli = Cli.isolated(tmp_path / "home")
    cli.write_config(f'[database]\nurl = "{endpoint.db_url}"\n')
    # The installed command once; the other cases in this process (click's runner).
    listed = await asyncio.to_thread(cli, "workers", "--json")
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 3

    def run(*args: str) -> Any:
        env = {"OPENPISTA_LOAD_PLUGINS": "", "OPENPISTA_CONFIG": str(cli.config)}
        return CliRunner().invoke(main_cli, list(args), env=env)

    failed = await asyncio.to_thread(run, "workers", "--status", "failed")
    assert failed.exit_code == 0, failed.output
    assert broken.task_id in failed.stdout
    assert done.task_id not in failed.stdout
    shown = await asyncio.to_thread(run, "workers", "show", done.task_id)
    assert shown.exit_code == 0, shown.output
    assert "finished, exit code 0" in shown.stdout
    assert "  compiling\n  linking\n" in shown.stdout
    assert "built" in shown.stdout
    missing = await asyncio.to_thread(run, "workers", "show", "nope")
    assert missing.exit_code == 1
    assert missing.stderr.startswith("❌ no worker task 'nope'")
    bad = await asyncio.to_thread(run, "workers", "--since", "tomorrowish")
    assert bad.exit_code == 1
    assert bad.stderr.startswith("❌ since='tomorrowish' is not a time")


def test_the_api_token_is_the_configured_one_or_a_private_generated_one(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from openpista.config import GatewaySettings, Settings, WorkersSettings
    from openpista.worker_api import api_token, token_path

    settings = Settings(gateway=GatewaySettings(pid_file=tmp_path / "state" / "openpista.pid"))
    first = api_token(settings)
    path = token_path(settings)
    assert path == tmp_path / "state" / "workers.token"
    assert (path.stat().st_mode & 0o777, len(first) >= 40) == (0o600, True)
    assert api_token(settings) == first  # kept across daemon starts
    workers = WorkersSettings(api_token=SecretStr("mine"))
    configured = settings.model_copy(update={"workers": workers})
    assert api_token(configured) == "mine"
