"""Worker reports: accepted with the task's secret, refused otherwise, revoked at the end."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from openpista.workers import (
    WorkerAuthError,
    WorkerHub,
    WorkerReport,
    WorkerReportError,
    worker_hub,
)


async def test_a_report_with_the_right_secret_reaches_the_waiting_task() -> None:
    hub = WorkerHub()
    grant = hub.open_task("s1", "cli:local")
    waiting = asyncio.create_task(hub.wait(grant.task_id, timeout=5))
    accepted = hub.submit(grant.token, WorkerReport(task_id=grant.task_id, output="done"))
    assert accepted.session_id == "s1"
    assert (await waiting).output == "done"


async def test_wrong_unknown_expired_and_revoked_credentials_are_refused() -> None:
    hub = WorkerHub()
    grant = hub.open_task("s1")
    with pytest.raises(WorkerAuthError):
        hub.submit("not-the-secret", WorkerReport(task_id=grant.task_id))
    with pytest.raises(WorkerAuthError):
        hub.submit(grant.token, WorkerReport(task_id="no-such-task"))
    expired = hub.open_task("s1", ttl=-1)
    with pytest.raises(WorkerAuthError, match="expired"):
        hub.submit(expired.token, WorkerReport(task_id=expired.task_id))
    hub.revoke(grant.task_id)
    hub.revoke(grant.task_id)  # idempotent
    with pytest.raises(WorkerAuthError):
        hub.submit(grant.token, WorkerReport(task_id=grant.task_id))
    assert [g.task_id for g in hub.open_tasks()] == [expired.task_id]


async def test_a_task_reports_once_and_waiting_times_out() -> None:
    hub = WorkerHub()
    grant = hub.open_task("s1")
    with pytest.raises(TimeoutError):
        await hub.wait(grant.task_id, timeout=0.01)
    hub.submit(grant.token, WorkerReport(task_id=grant.task_id))
    with pytest.raises(WorkerAuthError, match="already"):
        hub.submit(grant.token, WorkerReport(task_id=grant.task_id, output="again"))
    with pytest.raises(KeyError):
        await hub.wait("missing")


def test_the_process_has_one_hub() -> None:
    assert worker_hub() is worker_hub()


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """A task's output directory with one good file, a symlink out, a hard link and a fifo."""
    folder = tmp_path / "out"
    (folder / "sub").mkdir(parents=True)
    (folder / "chart.png").write_bytes(b"\x89PNG chart")
    (folder / "sub" / "table.csv").write_bytes(b"a,b\n")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOP SECRET")
    secret.chmod(0o600)
    (folder / "link.txt").symlink_to(secret)
    (folder / "linked-dir").symlink_to(tmp_path)
    os.link(secret, folder / "hard.txt")
    os.mkfifo(folder / "pipe")
    return folder


def report_with(*attachments: dict[str, str], task_id: str) -> WorkerReport:
    return WorkerReport.model_validate({"task_id": task_id, "attachments": list(attachments)})


async def test_path_attachments_are_read_from_the_task_output_dir(out_dir: Path) -> None:
    hub = WorkerHub()
    grant = hub.open_task("s1", output_dir=out_dir)
    inline = base64.b64encode(b"inline").decode()
    hub.submit(
        grant.token,
        report_with(
            {"name": "chart.png", "mime_type": "image/png", "path": "chart.png"},
            {"name": "table.csv", "path": "sub/table.csv"},
            {"name": "x.txt", "data": inline},
            task_id=grant.task_id,
        ),
    )
    report = await hub.wait(grant.task_id, timeout=1)
    assert [(a.name, a.path, base64.b64decode(a.data or "")) for a in report.attachments] == [
        ("chart.png", None, b"\x89PNG chart"),
        ("table.csv", None, b"a,b\n"),
        ("x.txt", None, b"inline"),
    ]


@pytest.mark.parametrize(
    "path",
    ["link.txt", "linked-dir/secret.txt", "hard.txt", "pipe", "missing.txt", "sub"],
)
async def test_files_that_lead_out_of_the_output_dir_are_refused(out_dir: Path, path: str) -> None:
    hub = WorkerHub()
    grant = hub.open_task("s1", output_dir=out_dir)
    with pytest.raises(WorkerReportError, match="attachment leak"):
        hub.submit(grant.token, report_with({"name": "leak", "path": path}, task_id=grant.task_id))
    # Nothing was accepted: the real report may still come.
    with pytest.raises(TimeoutError):
        await hub.wait(grant.task_id, timeout=0)


@pytest.mark.parametrize(
    ("attachment", "error"),
    [
        ({"name": "shadow", "path": "/etc/shadow"}, "absolute path is not allowed"),
        ({"name": "up", "path": "../secret.txt"}, "not a plain relative path"),
        ({"name": "up", "path": "sub/../../secret.txt"}, "not a plain relative path"),
        ({"name": "nul", "path": "chart.png\x00"}, "not a plain relative path"),
        ({"name": "web", "url": "http://127.0.0.1/x"}, "reports carry no URLs"),
        ({"name": "file", "url": "file:///etc/passwd"}, "reports carry no URLs"),
        ({"name": "both", "data": "eA==", "path": "chart.png"}, "exactly one of"),
        ({"name": "none"}, "exactly one of"),
        ({"name": "bad", "data": "not base64!"}, "not base64"),
        ({"name": "../x", "data": "eA=="}, "not a plain file name"),
        ({"name": "x", "mime_type": "text/html\r\nX: y", "data": "eA=="}, "not a MIME type"),
    ],
)
def test_reports_never_name_host_paths_or_urls(attachment: dict[str, str], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        report_with(attachment, task_id="t1")


async def test_a_task_without_an_output_dir_takes_inline_data_only(out_dir: Path) -> None:
    hub = WorkerHub()
    grant = hub.open_task("s1")
    with pytest.raises(WorkerReportError, match="no output directory"):
        hub.submit(
            grant.token, report_with({"name": "c", "path": "chart.png"}, task_id=grant.task_id)
        )


async def test_attachments_are_capped_per_task(out_dir: Path) -> None:
    hub = WorkerHub()
    grant = hub.open_task("s1", output_dir=out_dir, max_file_bytes=12)
    inline = base64.b64encode(b"12345").decode()
    with pytest.raises(WorkerReportError, match="larger than"):
        hub.submit(
            grant.token,
            report_with(
                {"name": "x", "data": inline},
                {"name": "chart.png", "path": "chart.png"},
                task_id=grant.task_id,
            ),
        )
    too_much = base64.b64encode(b"x" * 13).decode()
    with pytest.raises(WorkerReportError, match="larger than 12 bytes"):
        hub.submit(grant.token, report_with({"name": "x", "data": too_much}, task_id=grant.task_id))
