"""The memory database's files are private to their owner (mode 0600), like credentials."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from openpista.memory import MemoryStore, MemoryStoreError, create_engine_for
from openpista.models import Message
from openpista_testing.memory import new_session


@pytest.fixture
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # what most systems give: files would be 0644
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("usual_umask")
async def test_database_wal_and_shm_are_created_0600(tmp_path: Path) -> None:
    database = tmp_path / "state" / "memory.db"
    async with await MemoryStore.open(f"sqlite+aiosqlite:///{database}") as store:
        await new_session(store, "cli:1")
        await store.append_messages("cli:1", [Message(role="user", content="private")])
        files = [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
        assert all(path.exists() for path in files)  # WAL mode, while the store is open
        assert {path.name: mode(path) for path in files} == {path.name: 0o600 for path in files}


@pytest.mark.usefixtures("usual_umask")
async def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    database = tmp_path / "memory.db"
    async with await MemoryStore.open(f"sqlite+aiosqlite:///{database}"):
        pass
    database.chmod(0o640)  # the owner chose to share it with the group
    async with await MemoryStore.open(f"sqlite+aiosqlite:///{database}"):
        assert mode(database) == 0o640


def test_a_file_that_cannot_be_created_is_a_clear_error() -> None:
    # /proc takes no new files, whoever asks (the tests may run as root).
    with pytest.raises(MemoryStoreError) as caught:
        create_engine_for("sqlite+aiosqlite:////proc/openpista-memory.db")
    assert str(caught.value).startswith(
        "cannot create the memory database /proc/openpista-memory.db: "
    )
