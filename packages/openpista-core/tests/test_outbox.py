"""Outbound attachments through a real gateway: only bytes and files of the session's outbox
reach an adapter; host paths, symlinks, ``..`` and URLs are dropped with a note."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from openpista.files import turn_output_dir
from openpista.gateway.gateway import Gateway
from openpista.models import Answer, Attachment, ToolProgress
from openpista.outbox import screen
from openpista.plugins import PluginHost
from openpista.runtime import Runtime
from openpista_testing.adapters import LoopbackAdapter
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator
from openpista_testing.hostile import ALLOWED, HOSTILE_NAMES, attachment_tool


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "home"
    monkeypatch.setenv("OPENPISTA_HOME", str(folder))
    return folder


@pytest.fixture
async def runtime(home: Path, tmp_path: Path, llm_emulator: LlmEmulator) -> AsyncIterator[Runtime]:
    (tmp_path / "workspace").mkdir()
    opened = await Runtime.open(
        emulator_settings(llm_emulator, tmp_path), PluginHost.load(entry_points=False)
    )
    try:
        yield opened
    finally:
        await opened.close()


async def test_the_gateway_drops_attachments_that_name_host_files(
    runtime: Runtime, llm_emulator: LlmEmulator, tmp_path: Path
) -> None:
    hostile = attachment_tool(tmp_path)
    runtime.toolbox.tools.register(hostile.tool)
    llm_emulator.reply_tool_calls([(hostile.wire_name, {})])
    llm_emulator.reply_text("here you are")
    adapter = LoopbackAdapter("loop:")
    gateway = Gateway(runtime, [adapter])
    await gateway.start()
    try:
        await adapter.say("1", "send me the files")
        final = await adapter.answer("1")
    finally:
        await gateway.stop(deadline=0)
    assert [(a.name, a.path) for a in final.attachments] == [
        ("chart.png", str(turn_output_dir(final.session_id) / "chart.png"))
    ]
    assert await asyncio.to_thread(Path(final.attachments[0].path or "").read_bytes) == ALLOWED
    assert final.text.startswith("here you are\n\n❌ attachment 'passwd.png' was not sent: ")
    for name in HOSTILE_NAMES:
        assert f"❌ attachment {name!r} was not sent" in final.text
    assert "links are not fetched" in final.text
    assert "a symlink" in final.text
    # The progress of the tool (streamed to the adapter) carries no host path either.
    [finished] = [
        r.result for r in adapter.sent["loop:1"] if isinstance(r, ToolProgress) and r.result
    ]
    assert [a.name for a in finished.attachments] == ["chart.png"]


def test_inline_data_and_data_urls_are_kept_without_paths(home: Path) -> None:
    data = base64.b64encode(b"png").decode()
    response = Answer(
        session_id="s1",
        text="ok",
        attachments=[
            Attachment(name="a.png", data=data, path="/etc/shadow", url="http://127.0.0.1/"),
            Attachment(name="b.png", url=f"data:image/png;base64,{data}"),
            Attachment(name="c.png", url="data:image/png,not-base64-encoded"),
            Attachment(name="d.png", url="data:image/png;base64,@@@"),
            Attachment(name="e.png"),
        ],
    )
    screened = screen(response)
    assert isinstance(screened, Answer)
    assert [(a.name, a.data, a.path, a.url) for a in screened.attachments] == [
        ("a.png", data, None, None),
        ("b.png", data, None, None),
    ]
    assert screened.text.splitlines()[2:] == [
        "❌ attachment 'c.png' was not sent: links are not fetched; only inline data is sent",
        "❌ attachment 'd.png' was not sent: its data: URL is not valid base64",
        "❌ attachment 'e.png' was not sent: it has no content",
    ]


def test_a_file_of_another_session_or_a_relative_path_is_not_sent(home: Path) -> None:
    other = turn_output_dir("other-session") / "x.png"
    other.write_bytes(b"theirs")
    mine = turn_output_dir("s1")
    (mine / "x.png").write_bytes(b"mine")
    relative = Answer(
        session_id="s1",
        attachments=[
            Attachment(name="theirs.png", path=str(other)),
            Attachment(name="relative.png", path="x.png"),
            Attachment(name="mine.png", path=str(mine / "x.png")),
        ],
    )
    screened = screen(relative)
    assert isinstance(screened, Answer)
    assert [a.name for a in screened.attachments] == ["mine.png"]
    assert screened.text.count("only files openpista wrote for this chat are sent") == 2
    assert oct(mine.stat().st_mode & 0o777) == "0o700"
    unsession = screen(Answer(attachments=[Attachment(name="m", path=str(mine / "x.png"))]))
    assert isinstance(unsession, Answer)
    assert unsession.attachments == []
