"""``[tools.docker]`` and per-skill limits: validation and clear errors."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from openpista.config import ConfigError, Settings
from openpista.plugins import PluginHost
from openpista.runtime import build_toolbox
from openpista.skills.loader import load_skill
from openpista.tools.base import ToolError
from openpista_docker.settings import DockerSettings, limits_for_skill

EXAMPLE = Path(__file__).resolve().parents[3] / "config.example.toml"


def example_table() -> dict[str, object]:
    """The commented-out ``[tools.docker]`` of config.example.toml, uncommented."""
    text = EXAMPLE.read_text()
    section = text.split("# --- openpista-docker")[1].split("\n# --- ")[0]
    lines = [
        re.sub(r"\s+#.*$", "", line[2:])
        for line in section.splitlines()
        if line.startswith("# ") and ("=" in line or line.startswith("# ["))
    ]
    return tomllib.loads("\n".join(lines))["tools"]["docker"]  # type: ignore[no-any-return]


def test_the_documented_example_is_valid_and_matches_the_defaults() -> None:
    table = example_table()
    settings = DockerSettings.model_validate(table)
    defaults = DockerSettings().model_dump()
    for key, value in settings.model_dump().items():
        if key != "docker_host":
            assert defaults[key] == value, key
    assert set(table) == set(DockerSettings.model_fields)


def test_a_bad_option_is_a_config_error_naming_it() -> None:
    config = Settings(tools={"docker": {"memory_mb": 2, "colour": "blue"}})
    with pytest.raises(ConfigError) as caught:
        DockerSettings.from_config(config)
    assert str(caught.value) == (
        "[tools.docker] memory_mb: Input should be greater than or equal to 6; "
        "colour: unknown option; see config.example.toml"
    )


def test_a_skill_overrides_the_limits(tmp_path: Path) -> None:
    (tmp_path / "SKILL.md").write_text("---\nimage: alpine:3\nmemory_mb: 64\nversion: 2\n---\n")
    (tmp_path / "run.sh").write_text("true\n")
    skill = load_skill(tmp_path / "SKILL.md")
    assert skill.mode == "docker"
    limits = limits_for_skill(skill, DockerSettings(cpus=2))
    assert (limits.image, limits.memory_mb, limits.cpus) == ("alpine:3", 64, 2)


def test_a_skill_may_only_tighten_the_configured_limits(tmp_path: Path) -> None:
    """[tools.docker] is a ceiling: bigger numbers are cut to it; a wider network, another
    user, a writable root or a writable workspace are refused, naming each."""
    (tmp_path / "SKILL.md").write_text(
        "---\nimage: alpine:3\nmemory_mb: 99999\ncpus: 64\ntimeout: 9999\npids_limit: 1\n"
        "tmpfs_mb: 100000\n---\n"
    )
    skill = load_skill(tmp_path / "SKILL.md")
    limits = limits_for_skill(skill, DockerSettings(memory_mb=256, cpus=2, timeout=30))
    assert (limits.memory_mb, limits.cpus, limits.timeout) == (256, 2, 30)
    assert (limits.pids_limit, limits.tmpfs_mb) == (1, 64)  # lower is fine; cut to 64

    hostile = "---\nimage: alpine:3\nnetwork: host\nuser: '0:0'\nread_only_root: false\n"
    (tmp_path / "SKILL.md").write_text(hostile + "workspace: rw\n---\n")
    with pytest.raises(ToolError) as refused:
        limits_for_skill(load_skill(tmp_path / "SKILL.md"), DockerSettings())
    message = str(refused.value)
    for named in ("network 'host'", "user '0:0'", "read_only_root false", "workspace 'rw'"):
        assert named in message
    assert "change [tools.docker] to allow it" in message

    (tmp_path / "SKILL.md").write_text("---\nimage: alpine:3\nworkspace: rw\nuser: '1:1'\n---\n")
    allowed = DockerSettings(workspace="rw", user="1:1", network="bridge")
    limits = limits_for_skill(load_skill(tmp_path / "SKILL.md"), allowed)
    assert (limits.workspace, limits.user, limits.network) == ("rw", "1:1", "bridge")


def test_a_bad_skill_limit_is_a_tool_error(tmp_path: Path) -> None:
    (tmp_path / "SKILL.md").write_text("---\nimage: alpine:3\nworkspace: writable\n---\n")
    skill = load_skill(tmp_path / "SKILL.md")
    with pytest.raises(ToolError, match=r"invalid SKILL\.md front matter: workspace: Input should"):
        limits_for_skill(skill, DockerSettings())


def test_enabled_false_registers_nothing(tmp_path: Path) -> None:
    host = PluginHost.load(environ={"OPENPISTA_LOAD_PLUGINS": "docker"})
    on = build_toolbox(host, Settings(agent={"workspace": tmp_path}))
    off = build_toolbox(
        host, Settings(agent={"workspace": tmp_path}, tools={"docker": {"enabled": False}})
    )
    assert "container.run" in on.tools
    assert "docker" in on.runners
    assert "container.run" not in off.tools
    assert "docker" not in off.runners
