"""Configuration: file + environment, defaults, and errors that name the file and key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from openpista.auth.credentials import default_credentials_path
from openpista.config import ConfigError, Settings, load_config

EXAMPLE = Path(__file__).resolve().parents[3] / "config.example.toml"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("OPENPISTA_CONFIG", "OPENPISTA_PROVIDER", "OPENPISTA_MODEL", "OPENPISTA_WORKSPACE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("OPENPISTA_DATABASE_URL", raising=False)
    monkeypatch.delenv("OPENPISTA_HOME", raising=False)


def test_no_file_means_defaults() -> None:
    settings = load_config()
    assert settings.agent.provider == "openai"
    assert settings.agent.max_tool_rounds == 10
    assert settings.tools.system_run.timeout == 30
    assert settings.source_path is None


def test_file_values_are_read(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[agent]\nprovider = "anthropic"\nmax_tool_rounds = 3\n')
    settings = load_config(path)
    assert (settings.agent.provider, settings.agent.max_tool_rounds) == ("anthropic", 3)
    assert settings.source_path == path


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[agent]\nmax_tool_rounds = 3\n[providers.openai]\nmodel = "a"\n')
    monkeypatch.setenv("OPENPISTA_AGENT__MAX_TOOL_ROUNDS", "7")
    monkeypatch.setenv("OPENPISTA_PROVIDERS__OPENAI__API_KEY", "sk-env")
    monkeypatch.setenv("OPENPISTA_WORKSPACE", "~/ws")
    settings = load_config(path)
    assert settings.agent.max_tool_rounds == 7
    openai = settings.provider_settings("openai")
    assert openai.model == "a"
    assert openai.api_key is not None
    assert openai.api_key.get_secret_value() == "sk-env"
    assert settings.workspace == tmp_path / "ws"


def test_invalid_value_names_file_key_and_expectation(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[agent]\nmax_tool_rounds = 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "agent.max_tool_rounds" in message
    assert "greater than or equal to 1" in message


def test_a_bad_environment_value_names_the_variable_not_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[agent]\nprovider = "openai"\n')
    monkeypatch.setenv("OPENPISTA_AGENT__MAX_TOOL_ROUNDS", "abc")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith("the environment (OPENPISTA_* variables): invalid configuration")
    assert str(path) not in message
    assert "OPENPISTA_AGENT__MAX_TOOL_ROUNDS (agent.max_tool_rounds): Input should be" in message
    assert "(got 'abc')" in message


def test_file_and_environment_problems_each_name_their_origin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[gateway]\nqueue_size = 0\n")
    monkeypatch.setenv("OPENPISTA_MODEL", "")  # empty short forms are ignored
    monkeypatch.setenv("openpista_tools__system_run__timeout", "soon")  # any case
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert lines[0] == f"{path}: invalid configuration"
    assert any(line.startswith("  gateway.queue_size: ") for line in lines)
    assert any(
        line.startswith("  openpista_tools__system_run__timeout (tools.system_run.timeout): ")
        for line in lines
    )


def test_an_unparsable_list_from_the_environment_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENPISTA_CRON", "every minute")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert "OPENPISTA_CRON (cron): not a valid value" in str(info.value)


def test_unknown_key_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[agent]\nmax_tool_round = 5\n")
    with pytest.raises(ConfigError, match=r"agent\.max_tool_round: unknown option"):
        load_config(path)


def test_corrupt_toml_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[agent\nprovider = 'x'\n")
    with pytest.raises(ConfigError, match=re.escape(str(path)) + r": not valid TOML: .*line 1"):
        load_config(path)


def test_binary_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_openpista_config_variable_selects_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "other.toml"
    path.write_text('[agent]\nprovider = "ollama"\n')
    monkeypatch.setenv("OPENPISTA_CONFIG", str(path))
    assert load_config().agent.provider == "ollama"


def test_openpista_home_moves_every_default_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "config.toml").write_text('[agent]\nprovider = "ollama"\n')
    monkeypatch.setenv("OPENPISTA_HOME", str(state))
    monkeypatch.delenv("OPENPISTA_CREDENTIALS", raising=False)
    settings = load_config()
    assert settings.source_path == state / "config.toml"
    assert settings.agent.provider == "ollama"
    assert settings.agent.workspace == state / "workspace"
    assert settings.database.url == f"sqlite+aiosqlite:///{state}/memory.db"
    assert settings.gateway.pid_file == state / "openpista.pid"
    assert default_credentials_path() == state / "credentials.toml"


def test_without_openpista_home_the_defaults_are_shown_under_the_home_folder() -> None:
    settings = Settings()
    assert str(settings.agent.workspace) == "~/.openpista/workspace"
    assert settings.database.url == "sqlite+aiosqlite:///~/.openpista/memory.db"
    assert default_credentials_path() == Path("~/.openpista/credentials.toml").expanduser()


def test_example_config_is_valid_and_shows_the_defaults() -> None:
    example = load_config(EXAMPLE)
    defaults = Settings()
    assert example.agent == defaults.agent
    assert example.database == defaults.database
    assert example.tools == defaults.tools
    assert example.skills == defaults.skills
    assert example.gateway == defaults.gateway
    assert example.policy == defaults.policy
    assert example.cron == defaults.cron == []


def test_example_config_documents_every_option() -> None:
    text = EXAMPLE.read_text()
    data = tomllib.loads(text)
    for section in ("agent", "database", "skills", "gateway", "policy"):
        model = getattr(Settings(), section)
        for key in type(model).model_fields:
            assert re.search(rf"^#? ?{key} =", text, re.M), f"[{section}] {key} is not documented"
    for key in type(Settings().tools.system_run).model_fields:
        assert key in data["tools"]["system_run"], f"[tools.system_run] {key} is not documented"
    for key in ("model", "api_key", "base_url", "timeout", "max_retries", "retry_base_delay"):
        assert re.search(rf"^#? ?{key} =", text, re.M), f"provider option {key} is not documented"
    for key in ("name", "schedule", "channel", "message", "enabled"):
        assert re.search(rf"^# {key} =", text, re.M), f"[[cron]] {key} is not documented"
    for key in ("tool", "command", "channels", "action"):
        assert f"{key} = " in text, f"[[policy.rules]] {key} is not documented"


def test_plugin_runners_keep_their_options_under_skills(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[skills]\ntimeout = 5\n[skills.wasm]\nmemory_mb = 32\n")
    skills = load_config(path).skills
    assert skills.timeout == 5
    assert skills.model_extra == {"wasm": {"memory_mb": 32}}


def test_plugin_options_validate_a_table_and_name_each_bad_option() -> None:
    from pydantic import BaseModel, ConfigDict

    from openpista.config import plugin_options

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        port: int = 8080
        token: str = ""

    assert plugin_options("channels.web", None, Options) == Options()
    assert plugin_options("channels.web", {"port": 1}, Options).port == 1
    with pytest.raises(ConfigError) as caught:
        plugin_options("channels.web", {"port": "x", "tokn": "a"}, Options)
    message = str(caught.value)
    assert message.startswith("[channels.web] port: ")
    assert "tokn: unknown option" in message
    with pytest.raises(ConfigError, match=r"\[tools.browser\] must be a table of options, not int"):
        plugin_options("tools.browser", 3, Options)


def test_a_table_as_json_is_merged_with_its_nested_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENPISTA_AGENT", '{"max_tool_rounds": 3, "model": "m"}')
    monkeypatch.setenv("OPENPISTA_AGENT__MODEL", "nested")
    monkeypatch.setenv("OPENPISTA_PROVIDERS__OPENAI", '{"model": "a", "timeout": 5}')
    monkeypatch.setenv("OPENPISTA_MCP__SERVERS__FS__ARGS", '["-y", "server"]')
    monkeypatch.setenv("OPENPISTA_MCP__SERVERS__FS__COMMAND", "npx")
    settings = load_config()
    assert (settings.agent.max_tool_rounds, settings.agent.model) == (3, "nested")
    assert settings.provider_settings("openai").timeout == 5
    assert settings.mcp == {"servers": {"fs": {"args": ["-y", "server"], "command": "npx"}}}


@pytest.mark.parametrize(
    ("variable", "value", "option"),
    [
        ("OPENPISTA_AGENT", "max_tool_rounds=3", "agent"),
        ("OPENPISTA_POLICY__RULES", "[{tool", "policy"),
        ("OPENPISTA_GATEWAY", '{"queue_size": 2', "gateway"),
    ],
)
def test_a_table_or_list_variable_that_is_not_json_is_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, option: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert f"{variable} ({option}): not a valid value" in str(caught.value)


def test_settings_built_in_code_read_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENPISTA_AGENT__MAX_TOOL_ROUNDS", "7")
    monkeypatch.setenv("OPENPISTA_SOURCE_PATH", "/etc/passwd")  # not an option
    assert Settings().agent.max_tool_rounds == 10
    assert load_config().agent.max_tool_rounds == 7
    assert load_config().source_path is None
