"""The plugin module: registration, cheap import, configuration and closing."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from openpista.config import ConfigError, Settings
from openpista.plugins import PluginHost
from openpista.runtime import build_toolbox
from openpista.skills.base import Skill
from openpista.tools.base import ToolError
from openpista_wasm.runner import WasmSkillRunner
from openpista_wasm.settings import WasmSettings


def test_plugin_import_and_registration_do_not_load_wasmtime() -> None:
    code = (
        "import sys\n"
        "from openpista.plugins import PluginHost\n"
        "from openpista.config import Settings\n"
        "from openpista.runtime import build_toolbox\n"
        "host = PluginHost.load(environ={'OPENPISTA_LOAD_PLUGINS': 'wasm'})\n"
        "toolbox = build_toolbox(host, Settings(agent={'workspace': '/nonexistent'}))\n"
        "print(type(toolbox.runners['wasm']).__name__, 'wasmtime' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["WasmSkillRunner", "False"]


async def test_closing_the_runtime_releases_the_runner(
    tmp_path: Path, guests: Callable[[str], Path], make_skill: Callable[..., Skill]
) -> None:
    from openpista.runtime import Runtime

    host = PluginHost.load(environ={"OPENPISTA_LOAD_PLUGINS": "wasm"})
    settings = Settings.model_validate(
        {
            "agent": {"workspace": str(tmp_path)},
            "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"},
        }
    )
    runtime = await Runtime.open(settings, host)
    runner = runtime.toolbox.runners["wasm"]
    assert isinstance(runner, WasmSkillRunner)
    with pytest.raises(ToolError):
        await runner.run(make_skill("trap", guests("trap")), {}, 60)
    assert runner._parts is not None, "a run made the engine"
    await runtime.close()
    assert runner._parts is None, "closing the runtime released the engine"


async def test_skills_wasm_table_configures_the_runner(
    tmp_path: Path, guests: Callable[[str], Path], make_skill: Callable[..., Skill]
) -> None:
    host = PluginHost.load(environ={"OPENPISTA_LOAD_PLUGINS": "wasm"})
    table = {"memory_mb": 8, "timeout": 7, "cache_dir": str(tmp_path / "c")}
    settings = Settings(agent={"workspace": str(tmp_path)}, skills={"wasm": table})
    runner = build_toolbox(host, settings).runners["wasm"]
    assert isinstance(runner, WasmSkillRunner)
    try:
        assert runner.workspace == tmp_path
        assert (runner.settings.memory_mb, runner.settings.timeout) == (8, 7)
        with pytest.raises(ToolError, match="of its 8 MB cap"):
            await runner.run(make_skill("bomb", guests("memory_bomb")), {}, 60)
    finally:
        runner.close()


def test_a_bad_skills_wasm_table_is_a_plugin_problem(tmp_path: Path) -> None:
    host = PluginHost.load(environ={"OPENPISTA_LOAD_PLUGINS": "wasm"})
    settings = Settings(agent={"workspace": str(tmp_path)}, skills={"wasm": {"timeout": -1}})
    toolbox = build_toolbox(host, settings)
    assert "wasm" not in toolbox.runners
    assert any("[skills.wasm] timeout: " in problem for problem in toolbox.problems)


def test_settings_defaults_and_validation(tmp_path: Path) -> None:
    defaults = WasmSettings.from_table(None)
    assert (defaults.timeout, defaults.memory_mb, defaults.cache) == (30.0, 64, True)
    table = {"timeout": 2, "memory_mb": 8, "cache_dir": str(tmp_path)}
    assert WasmSettings.from_table(table).resolved_cache_dir() == tmp_path
    with pytest.raises(ConfigError, match=r"\[skills\.wasm\] memory_mb: .*less than or equal"):
        WasmSettings.from_table({"memory_mb": 10_000})
    with pytest.raises(ConfigError, match=r"\[skills\.wasm\] colour: unknown option"):
        WasmSettings.from_table({"colour": "red"})


def test_default_cache_dir_is_under_the_openpista_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENPISTA_HOME", str(tmp_path))
    assert WasmSettings().resolved_cache_dir() == tmp_path / "wasm" / "cache"


def test_config_example_documents_every_option_with_its_default() -> None:
    example = (Path(__file__).resolve().parents[3] / "config.example.toml").read_text()
    section = example.split("# --- openpista-wasm ---")[1].split("\n# --- ")[0]
    uncommented = "\n".join(
        line[2:] for line in section.splitlines() if line.startswith("# ") and "=" in line
    )
    table = tomllib.loads("[skills.wasm]\n" + uncommented)["skills"]["wasm"]
    assert set(table) == set(WasmSettings.model_fields)
    documented = WasmSettings.from_table(table)
    assert documented.model_dump(exclude={"cache_dir"}) == WasmSettings().model_dump(
        exclude={"cache_dir"}
    )
