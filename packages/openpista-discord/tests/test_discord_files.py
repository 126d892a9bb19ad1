"""Files both ways: attachments users send are saved (pictures shown to the LLM), files the
agent attaches are uploaded; both capped in size."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from openpista.models import Answer, Attachment
from openpista_discord.adapter import DiscordAdapter
from openpista_discord.settings import parse_settings
from openpista_discord.testing import DiscordEmulator, User
from openpista_testing.adapters import QueueContext
from openpista_testing.emulator import LlmEmulator
from openpista_testing.polling import eventually

Serve = Callable[..., Awaitable[DiscordAdapter]]


def png(width: int = 2) -> bytes:
    """A real, tiny PNG picture."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, width, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(width))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def test_a_picture_reaches_the_llm_and_is_saved(
    serve: Serve,
    discord_emulator: DiscordEmulator,
    llm_emulator: LlmEmulator,
    alice: User,
    home: Path,
) -> None:
    llm_emulator.reply_text("a red square")
    await serve()
    dm = discord_emulator.dm_channel(alice)
    picture = discord_emulator.attachment("square.png", png(), "image/png")
    discord_emulator.send_message(dm, "what is this?", alice, attachments=[picture])
    await eventually(lambda: discord_emulator.texts(dm) == ["a red square"])
    sent = str(llm_emulator.requests[0].json["messages"][-1]["content"])
    assert base64.b64encode(png()).decode() in sent
    saved = list((home / "discord" / "files").iterdir())
    assert [p.read_bytes() for p in saved] == [png()]


@pytest.mark.parametrize("claimed", [-1, 10])  # honest size, or lying small
async def test_too_big_files_are_refused_and_nothing_is_forwarded(
    serve: Serve,
    discord_emulator: DiscordEmulator,
    llm_emulator: LlmEmulator,
    alice: User,
    home: Path,
    claimed: int,
) -> None:
    await serve(max_download_bytes=1000)
    dm = discord_emulator.dm_channel(alice)
    big = discord_emulator.attachment("big.bin", b"x" * 5000, size=claimed)
    discord_emulator.send_message(dm, "take this", alice, attachments=[big])
    [reply] = await eventually(lambda: discord_emulator.texts(dm))
    assert reply.startswith("❌ could not take your file: big.bin")
    assert llm_emulator.requests == []
    assert not list((home / "discord" / "files").glob("*"))


@pytest.fixture
async def running(discord_emulator: DiscordEmulator) -> AsyncIterator[DiscordAdapter]:
    table = {
        "token": discord_emulator.token,
        "api_base": discord_emulator.base_url,
        "max_upload_bytes": 4096,
    }
    adapter = DiscordAdapter(parse_settings(table))
    await adapter.start(QueueContext())
    yield adapter
    await adapter.stop()


async def test_the_agents_files_are_uploaded_within_the_cap(
    running: DiscordAdapter, discord_emulator: DiscordEmulator, alice: User, tmp_path: Path
) -> None:
    dm = discord_emulator.dm_channel(alice)
    report = tmp_path / "report.txt"
    report.write_text("all good\n")
    attachments = [
        Attachment(
            name="../../etc/square.png",
            mime_type="image/png",
            data=base64.b64encode(png()).decode(),
        ),
        Attachment(name="report.txt", path=str(report)),
        Attachment(name="huge.bin", data=base64.b64encode(b"z" * 10_000).decode()),
        Attachment(name="broken.bin", data="%%% not base64"),
    ]
    await running.send(
        Answer(channel_id=f"discord:{dm}", text="here you are", attachments=attachments)
    )
    sent = await discord_emulator.wait_for_messages(5, channel_id=dm)
    assert sent[0].content == "here you are"
    assert sent[1].files == [("square.png", png())]  # no directories in the name
    assert sent[2].files == [("report.txt", b"all good\n")]
    assert sent[3].content.startswith("❌ could not send huge.bin: it is bigger than 4096")
    assert sent[4].content.startswith("❌ could not send broken.bin")
