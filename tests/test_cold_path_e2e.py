"""End to end: what a cold ``openpista run -e`` (no daemon) imports, against the LLM emulator.

The modules are read from ``python -X importtime``, which lists every import of the process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from openpista.memory.schema import HEAD_REVISION
from openpista_testing.cli import Cli
from openpista_testing.emulator import LlmEmulator
from openpista_testing.memory import schema_revision, upgrade_database

pytestmark = pytest.mark.e2e

NEVER = (
    "litellm",
    "alembic",
    "pydantic_settings",
    "rich",
    "pygments",
    "tenacity",
    "sqlalchemy.orm",
    "sqlalchemy.dialects.postgresql",
    "asyncpg",
    "openpista.memory.worker_reports",
    "openpista.memory.transfer",
    "openpista.memory.hybrid",
    "openpista.memory.indexer",
)
"""Not needed by one turn over the httpx provider path against a database at head (the
``OPENPISTA_*`` variables are read by ``openpista.envconfig``; rich and pygments are httpx's
command-line client, which ``import openpista`` keeps httpx from loading; the memory models
are Core tables; a SQLite URL needs no PostgreSQL dialect; worker reports, export/import
and semantic search are not part of a turn)."""


REGISTERED = (
    "openpista_docker.tool",
    "openpista_docker.runner",
    "openpista_browser.tools",
    "openpista_desktop.tools",
    "openpista_wasm.runner",
)
"""What the workspace plugins import to register their tools and skill runners."""
CALL_TIME = (
    "docker",
    "openpista_docker.sandbox",
    "openpista_docker.endpoint",
    "openpista.worker_service",
    "openpista.workers",
    "openpista_browser.guard",
    "openpista_browser.manager",
    "openpista_browser.proxy",
    "playwright",
    "openpista_desktop.screen",
    "openpista_desktop.inputs",
    "openpista_desktop.clipboard",
    "openpista_desktop.notify",
    "wasmtime",
    "openpista.plugin_dir",
    "openpista_wasm.sandbox",
    "openpista_wasm.cache",
)
"""What only a call of those tools needs (the sandbox, its worker service, the browser and
its proxy and address guard, the screen, input and clipboard backends, the WASM engine and
the directory plugins' manifests when there are none)."""


def cold_run(cli: Cli, text: str) -> tuple[str, set[str]]:
    """``openpista run -q -e TEXT`` in a fresh interpreter: its answer, the modules it loaded."""
    return openpista(cli, "run", "-q", "-e", text)


def openpista(cli: Cli, *args: str) -> tuple[str, set[str]]:
    """``openpista ARGS`` in a fresh interpreter: its output, the modules it loaded."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "openpista.cli", *args],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = done.stderr.splitlines()
    errors = [line for line in lines if not line.startswith("import time:")]
    assert done.returncode == 0, "\n".join(errors)
    modules = {line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")}
    return done.stdout, modules


def loaded(modules: set[str], package: str) -> bool:
    return any(m == package or m.startswith(f"{package}.") for m in modules)


def database_url(cli: Cli) -> str:
    return f"sqlite+aiosqlite:///{cli.home / 'memory.db'}"


def test_a_current_schema_runs_without_alembic_or_litellm(
    cli: Cli, llm_emulator: LlmEmulator
) -> None:
    answer, modules = cold_run(cli, "first")  # a new database: migrated
    assert answer == "OK\n"
    assert loaded(modules, "alembic")
    assert not loaded(modules, "litellm")

    answer, modules = cold_run(cli, "second")
    assert answer == "OK\n"
    assert [m for m in NEVER if loaded(modules, m)] == []
    assert loaded(modules, "sqlalchemy")  # the turn was stored: the same store, no Alembic
    assert [r.json["messages"][-1]["content"] for r in llm_emulator.requests] == [
        "first",
        "second",
    ]


async def test_an_older_schema_is_still_migrated(cli: Cli, llm_emulator: LlmEmulator) -> None:
    await upgrade_database(database_url(cli), "0001")
    answer, modules = cold_run(cli, "hi")
    assert answer == "OK\n"
    assert loaded(modules, "alembic")
    assert await schema_revision(database_url(cli)) == HEAD_REVISION
    _, modules = cold_run(cli, "again")
    assert not loaded(modules, "alembic")


def test_installed_plugins_bring_neither_alembic_nor_litellm(
    cli: Cli, llm_emulator: LlmEmulator
) -> None:
    cli.env.pop("OPENPISTA_LOAD_PLUGINS")  # every installed plugin, as a user has them
    cold_run(cli, "migrate first")
    answer, modules = cold_run(cli, "hi")
    assert answer == "OK\n"
    assert [m for m in NEVER if loaded(modules, m)] == []
    # The plugins registered their tools, yet what only a call needs stayed unloaded.
    assert all(loaded(modules, m) for m in REGISTERED)
    assert [m for m in CALL_TIME if loaded(modules, m)] == []


def test_help_loads_plugins_but_no_event_loop_nor_models(cli: Cli) -> None:
    # No installed plugin selected (their own CLI modules may need more): the plugin host
    # still runs, to look for commands, but scans no installed distribution.
    output, modules = openpista(cli, "--help")
    assert "Usage: openpista" in output
    assert loaded(modules, "openpista.plugins")
    heavy = ("asyncio", "pydantic", "sqlalchemy", "httpx", "yaml", "importlib.metadata", *NEVER)
    assert [m for m in heavy if loaded(modules, m)] == []


def test_help_with_every_installed_plugin_imports_no_plugin_runtime(cli: Cli) -> None:
    # As a user has them: every plugin of the workspace adds its commands, which are listed
    # (so each plugin's command module is imported), but what the commands run is not.
    cli.env.pop("OPENPISTA_LOAD_PLUGINS")
    output, modules = openpista(cli, "--help")
    assert all(f"\n  {name} " in output for name in ("connect", "mcp", "telegram", "web"))
    heavy = ("asyncio", "pydantic", "httpx", "importlib.metadata", "pathlib", "openpista.access")
    plugin_runtime = ("openpista_mobile.terminal", "openpista_mobile.client", "aioquic", "mcp")
    assert [m for m in (*heavy, *plugin_runtime, *NEVER) if loaded(modules, m)] == []


def test_the_memory_models_are_core_tables_without_the_orm() -> None:
    # The models declared with openpista.memory.tables' mapped_column; none may import the
    # ORM (the modules that import it are named, as the last openpista frame of the import).
    models = ("tables", "notes", "people", "usage", "worker_reports", "summaries")
    code = textwrap.dedent(
        f"""
        import importlib, sys, traceback
        from pathlib import Path

        importers = set()

        class Watch:
            def find_spec(self, name, path=None, target=None):
                if name == "sqlalchemy.orm":
                    frames = [f for f in traceback.extract_stack() if "/openpista/" in f.filename]
                    importers.add(Path(frames[-1].filename).stem if frames else "?")

        sys.meta_path.insert(0, Watch())
        from sqlalchemy import Column, insert, select
        from openpista.memory.tables import MessageRow, SessionRow
        for name in {models!r}:
            importlib.import_module("openpista.memory." + name)
        assert isinstance(MessageRow.session_id, Column)
        assert MessageRow.session_id is MessageRow.__table__.c.session_id
        assert not hasattr(MessageRow, "__mapper__")
        assert str(insert(SessionRow)).startswith("INSERT INTO sessions (id, title")
        assert "FROM messages" in str(select(MessageRow.id))
        print(sorted(importers & set({models!r})))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
