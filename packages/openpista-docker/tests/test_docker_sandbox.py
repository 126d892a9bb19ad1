"""``container.run`` against a real Docker engine: lifecycle, limits, isolation, fallback."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import docker
import pytest

from openpista.models import ToolResult
from openpista.workers import WorkerAuthError, WorkerReport, worker_hub
from openpista_docker.sandbox import TASK_LABEL, DockerSandbox
from openpista_docker.testing import PrivateDockerd, import_busybox_image

Call = Callable[..., Awaitable[ToolResult]]


def labelled(client: docker.DockerClient) -> list[Any]:
    # sparse: one listing call, no inspect of a container that may be going away meanwhile.
    return client.containers.list(all=True, filters={"label": TASK_LABEL}, sparse=True)


async def test_run_collects_exit_code_output_and_files(
    sandbox: DockerSandbox, call: Call, client: docker.DockerClient
) -> None:
    result = await call(
        sandbox,
        command="echo hello; echo oops >&2; printf 'a,b\\n1,2\\n' > /out/table.csv; exit 3",
    )
    assert not result.is_error, result.output
    assert result.output.startswith("exit code: 3\n")
    assert "--- stdout ---\nhello" in result.output
    assert "--- stderr ---\noops" in result.output
    assert "table.csv (8 bytes, attached)" in result.output
    [table] = result.attachments
    assert table.name == "table.csv"
    assert table.mime_type == "text/csv"
    assert base64.b64decode(table.data or "") == b"a,b\n1,2\n"
    # No reuse: the container is gone, and so is the credential.
    assert labelled(client) == []
    assert worker_hub().open_tasks() == []


async def test_long_output_is_cut_in_the_middle(
    make_sandbox: Callable[..., DockerSandbox], call: Call
) -> None:
    sandbox = make_sandbox(max_output_chars=200)
    result = await call(sandbox, command="seq 1 20000")
    assert "characters truncated" in result.output
    assert "\n1\n2\n" in result.output
    assert result.output.rstrip().endswith("20000")
    assert len(result.output) < 600


async def test_the_time_limit_kills_the_container(
    sandbox: DockerSandbox, call: Call, client: docker.DockerClient
) -> None:
    result = await call(sandbox, command="echo started; sleep 60", timeout=1)
    assert "time limit of 1 s reached: the container was killed" in result.output
    assert "timed out after 1 s" in result.output
    assert "started" in result.output
    assert labelled(client) == []


async def test_the_memory_limit_is_enforced(
    make_sandbox: Callable[..., DockerSandbox], call: Call, client: docker.DockerClient
) -> None:
    sandbox = make_sandbox(memory_mb=32)
    # dd allocates its block size at once: 256 MB cannot fit in 32.
    result = await call(sandbox, command="dd if=/dev/zero of=/dev/null bs=256M count=1")
    assert result.is_error
    assert "the container ran out of memory (limit 32 MB) and was killed" in result.output
    small = await call(sandbox, command="dd if=/dev/zero of=/dev/null bs=4M count=1 && echo fine")
    assert not small.is_error
    assert "fine" in small.output
    assert labelled(client) == []


async def test_there_is_no_network(sandbox: DockerSandbox, call: Call) -> None:
    result = await call(sandbox, command="ls /sys/class/net; ip route; nc -w 2 192.0.2.1 80")
    assert result.output.startswith("exit code: 1\n--- stdout ---\nlo\n--- stderr ---\n")
    assert "nc: can't connect to remote host (192.0.2.1): Network is unreachable" in result.output


async def test_the_workspace_is_readable_but_not_writable(
    sandbox: DockerSandbox, call: Call, workspace: Path
) -> None:
    result = await call(
        sandbox, command="cat notes.txt; pwd; touch /workspace/new.txt; rm /workspace/notes.txt"
    )
    assert "buy oat milk\n/workspace" in result.output
    assert "Read-only file system" in result.output
    assert not (workspace / "new.txt").exists()
    assert (workspace / "notes.txt").exists()


async def test_the_worker_is_unprivileged_and_the_root_is_read_only(
    sandbox: DockerSandbox, call: Call
) -> None:
    result = await call(
        sandbox,
        command="id -u; id -g; grep CapEff /proc/self/status; echo x > /tmp/ok && cat /tmp/ok;"
        " touch /etc/evil",
    )
    assert "--- stdout ---\n65534\n65534\nCapEff:\t0000000000000000\nx" in result.output
    assert "touch: /etc/evil: Read-only file system" in result.output


async def test_arguments_image_workdir_and_env(
    sandbox: DockerSandbox, call: Call, image: str, make_sandbox: Callable[..., DockerSandbox]
) -> None:
    """Only images the operator listed may be asked for (nothing else is pulled or run)."""
    result = await call(
        sandbox, command="pwd; echo $GREETING", image=image, workdir="/tmp", env={"GREETING": "hi"}
    )
    assert "--- stdout ---\n/tmp\nhi" in result.output
    for hostile in ("openpista-no-such-image:1", "attacker.invalid/evil:latest", f"{image} "):
        refused = await call(sandbox, command="true", image=hostile)
        assert refused.is_error
        assert f"image {hostile!r} is not allowed; use one of: {image}" in refused.output
    listed = make_sandbox(images=["openpista-no-such-image:1"])
    missing = await call(listed, command="true", image="openpista-no-such-image:1")
    assert missing.is_error
    assert "image openpista-no-such-image:1 is not on the Docker engine" in missing.output
    relative = await call(sandbox, command="true", workdir="tmp")
    assert relative.is_error
    assert "absolute" in relative.output


async def test_the_credential_is_injected_and_revoked_when_the_task_ends(
    sandbox: DockerSandbox, call: Call
) -> None:
    result = await call(sandbox, command="echo $OPENPISTA_TASK_ID; echo $OPENPISTA_TASK_TOKEN")
    task_id, token = result.output.split("--- stdout ---\n")[1].split()[:2]
    assert len(token) > 30
    with pytest.raises(WorkerAuthError, match="unknown task or wrong credential"):
        worker_hub().submit(token, WorkerReport(task_id=task_id, output="too late"))


async def test_a_failed_task_revokes_its_credential_too(
    make_sandbox: Callable[..., DockerSandbox], call: Call, client: docker.DockerClient
) -> None:
    sandbox = make_sandbox(memory_mb=32)
    result = await call(sandbox, command="dd if=/dev/zero of=/dev/null bs=256M count=1")
    assert result.is_error
    assert worker_hub().open_tasks() == []
    assert labelled(client) == []


async def test_without_a_daemon_it_falls_back_to_a_subprocess_with_a_warning(
    make_sandbox: Callable[..., DockerSandbox],
    call: Call,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sandbox = make_sandbox(docker_host=f"unix://{tmp_path}/no-docker.sock", fallback="subprocess")
    with caplog.at_level(logging.WARNING):
        result = await call(sandbox, command='echo on the host; echo f > "$OPENPISTA_OUT/f.txt"')
    assert not result.is_error
    assert result.output.startswith(
        f"WARNING: no Docker engine answers at unix://{tmp_path}/no-docker.sock"
    )
    assert "WITHOUT the Docker sandbox" in result.output
    assert "exit code: 0\n--- stdout ---\non the host" in result.output
    assert [a.name for a in result.attachments] == ["f.txt"]
    assert any("WITHOUT the Docker sandbox" in r.getMessage() for r in caplog.records)
    assert worker_hub().open_tasks() == []


async def test_the_host_fallback_gets_no_secret_of_openpista(
    make_sandbox: Callable[..., DockerSandbox],
    call: Call,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-openai-4711")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:secret-telegram-4711")
    monkeypatch.setenv("MY_TOOL_SETTING", "passed-through-4711")
    sandbox = make_sandbox(docker_host=f"unix://{tmp_path}/no-docker.sock", fallback="subprocess")
    sandbox.env_passthrough = ("MY_TOOL_SETTING",)
    result = await call(sandbox, command="env")
    assert "WITHOUT the Docker sandbox" in result.output
    assert "secret-openai-4711" not in result.output
    assert "secret-telegram-4711" not in result.output
    assert "MY_TOOL_SETTING=passed-through-4711" in result.output
    assert "OPENPISTA_TASK_ID=" in result.output  # the worker's own variables still arrive


async def test_without_a_daemon_it_refuses_by_default(
    make_sandbox: Callable[..., DockerSandbox], call: Call, tmp_path: Path
) -> None:
    marker = tmp_path / "should-not-run"
    sandbox = make_sandbox(docker_host=f"unix://{tmp_path}/no-docker.sock")
    assert sandbox.settings.fallback == "refuse"
    result = await call(sandbox, command=f"touch {marker}")
    assert result.is_error
    assert 'the task did not run ([tools.docker] fallback = "refuse")' in result.output
    assert not marker.exists()
    assert await sandbox.unsandboxed_warning() is None


async def test_a_cancelled_task_removes_its_container_and_revokes_its_credential(
    sandbox: DockerSandbox, call: Call, client: docker.DockerClient
) -> None:
    running = asyncio.create_task(call(sandbox, command="sleep 60", timeout=120))
    for _ in range(400):
        if [c.status for c in labelled(client)] == ["running"]:
            break
        await asyncio.sleep(0.025)
    assert [c.status for c in labelled(client)] == ["running"]
    assert len(worker_hub().open_tasks()) == 1
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert labelled(client) == []
    assert worker_hub().open_tasks() == []


async def test_an_engine_that_vanishes_is_a_clear_error_then_the_fallback(
    make_sandbox: Callable[..., DockerSandbox], call: Call
) -> None:
    engine = PrivateDockerd.start()
    try:
        client = engine.client()
        image = import_busybox_image(client)
        client.close()
        sandbox = make_sandbox(docker_host=engine.host, image=image, fallback="subprocess")
        assert "hi" in (await call(sandbox, command="echo hi")).output
    finally:
        engine.stop()
    failed = await call(sandbox, command="echo again")
    assert failed.is_error
    assert failed.output.startswith("the Docker engine failed to run the task: ")
    fallback = await call(sandbox, command="echo on the host")
    assert fallback.output.startswith("WARNING: no Docker engine answers")


@pytest.mark.parametrize("asked", [90, 1e12, 1e308])
async def test_the_configured_time_limit_is_a_ceiling(
    make_sandbox: Callable[..., DockerSandbox], call: Call, asked: float
) -> None:
    sandbox = make_sandbox(timeout=1)
    result = await call(sandbox, command="echo started; sleep 30", timeout=asked)
    assert not result.is_error, result.output
    assert result.output.startswith(
        f"note: a time limit of {asked:g} s was asked for; the configured maximum of 1 s applies"
    )
    assert "time limit of 1 s reached: the container was killed" in result.output


async def test_a_shorter_time_limit_applies_without_a_note(
    make_sandbox: Callable[..., DockerSandbox], call: Call
) -> None:
    sandbox = make_sandbox(timeout=30)
    result = await call(sandbox, command="sleep 30", timeout=1)
    assert result.output.startswith("time limit of 1 s reached")


@pytest.mark.parametrize(
    ("asked", "error"),
    [
        ("soon", "argument 'timeout': Input should be a valid number"),
        ("inf", "argument 'timeout': Input should be a finite number"),
        ("nan", "argument 'timeout': Input should be a finite number"),
        (-5, "argument 'timeout': Input should be greater than 0"),
        ([1], "argument 'timeout': Input should be a valid number"),
    ],
)
async def test_garbage_time_limits_are_clear_errors(
    sandbox: DockerSandbox, call: Call, client: docker.DockerClient, asked: object, error: str
) -> None:
    result = await call(sandbox, command="touch /out/ran", timeout=asked)
    assert result.is_error
    assert error in result.output
    assert labelled(client) == []
