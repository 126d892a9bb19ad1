"""Worker reports: the unix-socket endpoint, the ``report`` helper, inside and outside Docker."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from openpista.models import ToolResult
from openpista.worker_service import WorkerReports
from openpista.workers import WorkerHub
from openpista_docker.endpoint import WorkerEndpoint
from openpista_docker.sandbox import DockerSandbox
from openpista_docker.testing import PYTHON_IMAGE, PrivateDockerd, import_busybox_image

Call = Callable[..., Awaitable[ToolResult]]


@pytest.fixture(scope="session")
def python_image(engine: PrivateDockerd) -> str:
    """busybox plus the host's python3: an image that can run the ``report`` helper."""
    client = engine.client()
    try:
        return import_busybox_image(client, PYTHON_IMAGE, with_python=True)
    finally:
        client.close()


def uds_client(socket_path: Path) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=str(socket_path)), base_url="http://worker"
    )


async def test_a_worker_reports_from_inside_its_container(
    make_sandbox: Callable[..., DockerSandbox], call: Call, python_image: str
) -> None:
    sandbox = make_sandbox(image=python_image)
    result = await call(
        sandbox,
        command="echo 42 > /tmp/answer.txt;"
        " python3 /run/openpista/report --exit-code 0 --file /tmp/answer.txt 'the answer is 42'",
    )
    assert result.output.startswith("exit code: 0\n--- stdout ---\n")
    assert '"result":"accepted"' in result.output
    assert "--- worker report (status ok, exit code 0) ---\nthe answer is 42" in result.output
    [answer] = result.attachments
    assert answer.name == "answer.txt"
    assert answer.mime_type == "text/plain"


async def test_a_report_with_a_wrong_token_is_refused_inside_the_container(
    make_sandbox: Callable[..., DockerSandbox], call: Call, python_image: str
) -> None:
    sandbox = make_sandbox(image=python_image)
    result = await call(
        sandbox, command="OPENPISTA_TASK_TOKEN=forged python3 /run/openpista/report 'fake'"
    )
    assert result.output.startswith("exit code: 1\n")
    assert '"result":"unknown_task"' in result.output
    assert "unknown task or wrong credential" in result.output
    assert "worker report" not in result.output


async def test_a_report_after_the_task_ended_is_refused(sandbox: DockerSandbox, call: Call) -> None:
    result = await call(sandbox, command="echo $OPENPISTA_TASK_ID $OPENPISTA_TASK_TOKEN")
    task_id, token = result.output.split("--- stdout ---\n")[1].split()[:2]
    endpoint = await sandbox.endpoint()
    async with uds_client(endpoint.socket_path) as client:
        late = await client.post(
            "/report",
            json={"task_id": task_id, "output": "late"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert (late.status_code, late.json()["result"]) == (410, "expired")
    assert late.json()["detail"] == "the task has ended: its credential is revoked"


async def test_the_subprocess_fallback_reports_through_the_same_endpoint(
    make_sandbox: Callable[..., DockerSandbox], call: Call, tmp_path: Path
) -> None:
    sandbox = make_sandbox(docker_host=f"unix://{tmp_path}/none.sock", fallback="subprocess")
    result = await call(
        sandbox,
        command='python3 "$(dirname "$OPENPISTA_REPORT_SOCKET")/report" --status error - <<EOF\n'
        "half done\nEOF",
    )
    assert result.output.startswith("WARNING: no Docker engine answers")
    assert "--- worker report (status error) ---\nhalf done" in result.output


@pytest.fixture
async def reports(tmp_path: Path) -> AsyncIterator[WorkerReports]:
    """The report service of a hub of its own, over a real database."""
    started = await WorkerReports.open(WorkerHub(), f"sqlite+aiosqlite:///{tmp_path}/w.db")
    yield started
    await started.close()


@pytest.fixture
async def endpoint(reports: WorkerReports) -> AsyncIterator[WorkerEndpoint]:
    served = WorkerEndpoint(reports.hub, max_bytes=4096)
    await served.start()
    yield served
    await served.stop()
    assert not served.directory.exists()


async def test_the_endpoint_stores_a_report_before_its_ack_and_once(
    endpoint: WorkerEndpoint, reports: WorkerReports
) -> None:
    grant = endpoint.hub.open_task("session-1", "cli:local")
    report = {"task_id": grant.task_id, "output": "done", "exit_code": 0}
    auth = {"Authorization": f"Bearer {grant.token}"}
    async with uds_client(endpoint.socket_path) as client:
        accepted = await client.post("/report", json=report, headers=auth)
        # Stored when acknowledged: no write is left to wait for.
        assert await reports.log.has_report(grant.task_id, "final")
        again = await client.post("/report", json=report, headers=auth)
        progress = {"v": 1, "task_id": grant.task_id, "report_id": "p1", "kind": "progress"}
        versioned = await client.post("/report", json=progress, headers=auth)
    assert accepted.status_code == 200
    assert accepted.json() == {
        "v": 1,
        "result": "accepted",
        "task_id": grant.task_id,
        "report_id": "final",
        "detail": "",
    }
    assert (await endpoint.hub.wait(grant.task_id, timeout=1)).output == "done"
    assert (again.status_code, again.json()["result"]) == (200, "duplicate")
    assert (versioned.status_code, versioned.json()["result"]) == (200, "accepted")
    task = await reports.log.task(grant.task_id, reports=True)
    assert task is not None
    assert [(r.report_id, r.kind) for r in task.reports] == [
        ("final", "finished"),
        ("p1", "progress"),
    ]


async def test_without_a_report_service_the_endpoint_asks_to_send_again(
    tmp_path: Path,
) -> None:
    served = WorkerEndpoint(WorkerHub(), max_bytes=4096)
    await served.start()
    try:
        grant = served.hub.open_task("session-1")
        async with uds_client(served.socket_path) as client:
            answer = await client.post(
                "/report",
                json={"task_id": grant.task_id},
                headers={"Authorization": f"Bearer {grant.token}"},
            )
        assert answer.status_code == 503
        assert "stores no worker reports" in answer.json()["error"]
        with pytest.raises(TimeoutError):
            await served.hub.wait(grant.task_id, timeout=0)
    finally:
        await served.stop()


@pytest.mark.parametrize(
    ("headers", "body", "status", "error"),
    [
        ({}, b"{}", 401, "missing credential"),
        ({"Authorization": "Basic abc"}, b"{}", 401, "missing credential"),
        ({"Authorization": "Bearer wrong"}, None, 403, "unknown task or wrong credential"),
        ({"Authorization": "Bearer wrong"}, b"{not json", 400, "not JSON"),
        ({"Authorization": "Bearer wrong"}, b"\xff\xfe", 400, "not JSON"),
        ({"Authorization": "Bearer wrong"}, b'{"output": 1}', 400, "invalid report"),
        ({"Authorization": "Bearer wrong"}, b"[1, 2]", 400, "invalid report"),
        ({"Authorization": "Bearer wrong"}, b"x" * 5000, 413, "larger than 4096 bytes"),
    ],
)
async def test_the_endpoint_refuses_bad_requests(
    endpoint: WorkerEndpoint,
    headers: dict[str, str],
    body: bytes | None,
    status: int,
    error: str,
) -> None:
    grant = endpoint.hub.open_task("session-1")
    content = body if body is not None else json.dumps({"task_id": grant.task_id}).encode()
    async with uds_client(endpoint.socket_path) as client:
        answer = await client.post("/report", content=content, headers=headers)
    assert answer.status_code == status
    assert error in answer.json()["detail"]
    # Nothing was accepted: the task still waits for its real worker.
    assert [g.task_id for g in endpoint.hub.open_tasks()] == [grant.task_id]
    with pytest.raises(TimeoutError):
        await endpoint.hub.wait(grant.task_id, timeout=0)


async def test_an_expired_credential_is_refused(endpoint: WorkerEndpoint) -> None:
    grant = endpoint.hub.open_task("session-1", ttl=-1)
    async with uds_client(endpoint.socket_path) as client:
        answer = await client.post(
            "/report",
            json={"task_id": grant.task_id, "output": "late"},
            headers={"Authorization": f"Bearer {grant.token}"},
        )
    assert (answer.status_code, answer.json()["result"]) == (410, "expired")
    assert answer.json()["detail"] == "the task's credential has expired"


async def test_an_oversized_streamed_body_is_refused(endpoint: WorkerEndpoint) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1000

    async with uds_client(endpoint.socket_path) as client:
        answer = await client.post(
            "/report", content=chunks(), headers={"Authorization": "Bearer t"}
        )
    assert (answer.status_code, answer.json()["result"]) == (413, "too_large")


async def test_other_paths_and_methods_are_refused(endpoint: WorkerEndpoint) -> None:
    async with uds_client(endpoint.socket_path) as client:
        assert (await client.get("/report")).status_code == 405
        assert (await client.post("/other")).status_code == 404


async def test_tokens_never_reach_the_logs(
    endpoint: WorkerEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    grant = endpoint.hub.open_task("session-1")
    with caplog.at_level(logging.DEBUG):
        async with uds_client(endpoint.socket_path) as client:
            for token in ("forged-secret-value", grant.token):
                await client.post(
                    "/report",
                    json={"task_id": grant.task_id, "output": "x"},
                    headers={"Authorization": f"Bearer {token}"},
                )
    text = caplog.text
    assert "worker report unknown_task" in text
    assert "stored for task" in text
    assert "forged-secret-value" not in text
    assert grant.token not in text


POST_REPORT = """import http.client, json, os, socket, sys


class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(os.environ["OPENPISTA_REPORT_SOCKET"])


report = {
    "task_id": os.environ["OPENPISTA_TASK_ID"],
    "output": "see attached",
    "attachments": [{"name": "loot.txt", "path": sys.argv[1]}],
}
connection = Unix("worker")
connection.request(
    "POST", "/report", json.dumps(report),
    {"Authorization": "Bearer " + os.environ["OPENPISTA_TASK_TOKEN"]},
)
answer = connection.getresponse()
print(answer.status, answer.read().decode())
"""


@pytest.fixture
def host_secret(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.txt"
    secret.write_text("HOST SECRET 0600\n")
    secret.chmod(0o600)
    return secret


@pytest.mark.parametrize(
    ("setup", "path", "error"),
    [
        ("", "/etc/shadow", "an absolute path is not allowed here"),
        ("", "{secret}", "an absolute path is not allowed here"),
        ("", "../../../../../../../..{secret}", "not a plain relative path"),
        ("ln -s {secret} /out/loot.txt;", "loot.txt", "a symlink"),
        ("ln -s / /out/root;", "root{secret}", "a symlink"),
    ],
)
async def test_a_worker_cannot_make_openpista_read_a_host_file(
    make_sandbox: Callable[..., DockerSandbox],
    call: Call,
    python_image: str,
    workspace: Path,
    host_secret: Path,
    setup: str,
    path: str,
    error: str,
) -> None:
    (workspace / "post.py").write_text(POST_REPORT)
    (workspace / "post.py").chmod(0o644)
    sandbox = make_sandbox(image=python_image)
    target = path.format(secret=host_secret)
    result = await call(
        sandbox, command=f"{setup.format(secret=host_secret)} python3 post.py '{target}'"
    )
    assert "400 " in result.output
    assert error in result.output
    assert "worker report" not in result.output
    assert "HOST SECRET" not in result.output
    assert all(a.name != "loot.txt" for a in result.attachments)


async def test_a_worker_attaches_a_file_of_its_out_directory_by_path(
    make_sandbox: Callable[..., DockerSandbox], call: Call, python_image: str, workspace: Path
) -> None:
    (workspace / "post.py").write_text(POST_REPORT)
    (workspace / "post.py").chmod(0o644)
    sandbox = make_sandbox(image=python_image, max_files=0)
    result = await call(
        sandbox, command="mkdir /out/d; echo found > /out/d/loot.txt; python3 post.py d/loot.txt"
    )
    assert "200 " in result.output
    assert "--- worker report (status ok) ---\nsee attached" in result.output
    [loot] = result.attachments
    assert (loot.name, loot.path, base64.b64decode(loot.data or "")) == (
        "loot.txt",
        None,
        b"found\n",
    )


async def test_a_container_s_report_lands_in_the_worker_history(
    make_sandbox: Callable[..., DockerSandbox], call: Call, python_image: str, tmp_path: Path
) -> None:
    sandbox = make_sandbox(image=python_image)
    reports = await WorkerReports.open(sandbox.hub, f"sqlite+aiosqlite:///{tmp_path}/w.db")
    feed = reports.feed.subscribe()
    try:
        await call(sandbox, command="python3 /run/openpista/report --exit-code 0 'done: 42'")
        await reports.flush()
        (listed,) = await reports.log.tasks()
        task = await reports.log.task(listed.task_id, reports=True)
        assert task is not None
        assert (task.status, task.exit_code) == ("finished", 0)
        assert task.revoked_at is not None  # the credential ended with the task
        assert task.reports[0].body["output"] == "done: 42"
        events = [feed.get_nowait()["event"] for _ in range(feed.qsize())]
        assert events == ["created", "finished", "ended"]
    finally:
        await reports.close()


async def test_the_host_fallback_worker_reports_over_http_with_the_stdlib_client(
    make_sandbox: Callable[..., DockerSandbox], call: Call, tmp_path: Path
) -> None:
    import sys

    from openpista_testing.workers import start_endpoint, stop_endpoint

    sandbox = make_sandbox(docker_host=f"unix://{tmp_path}/none.sock", fallback="subprocess")
    endpoint = await start_endpoint(sandbox.hub, f"sqlite+aiosqlite:///{tmp_path}/w.db")
    sandbox.hub.report_url = endpoint.report_url
    try:
        result = await call(
            sandbox,
            command=f"{sys.executable} -m openpista.worker_client finished --exit-code 0"
            " --output 'over http'",
        )
        assert "--- worker report (status ok, exit code 0) ---\nover http" in result.output
        (task,) = await endpoint.reports.log.tasks()
        assert task.status == "finished"
    finally:
        sandbox.hub.report_url = None
        await stop_endpoint(endpoint)
