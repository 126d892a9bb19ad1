"""Plugin settings: one validation path, one error format, declared environment overrides."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self

import pytest
from pydantic import Field, SecretStr, model_validator

from openpista import ConfigError, PluginSettings, hookimpl
from openpista.config import Settings
from openpista.plugin_context import PluginContext
from openpista.plugin_settings import HttpRoot
from openpista.plugins import PluginHost
from openpista.runtime import channel_factories, check_settings
from openpista_testing.adapters import LoopbackAdapter


class PigeonSettings(PluginSettings):
    section: ClassVar[str] = "channels.pigeon"
    env: ClassVar[Mapping[str, str]] = {"PIGEON_TOKEN": "token", "PIGEON_PORT": "port"}

    enabled: bool = False
    token: SecretStr | None = None
    port: int = Field(default=8000, ge=0, le=65535)
    relay: str | None = None

    @model_validator(mode="after")
    def _relay_needs_a_token(self) -> Self:
        if self.relay is not None and self.token is None:
            raise ValueError("relay needs a token")
        return self


def test_a_declared_variable_overrides_the_table_and_a_blank_one_does_not() -> None:
    table = {"token": "from-file", "port": 1}
    settings = PigeonSettings.from_table(table, environ={"PIGEON_TOKEN": " from-env "})
    assert settings.token is not None
    assert settings.token.get_secret_value() == "from-env"
    assert settings.port == 1
    blank = PigeonSettings.from_table(table, environ={"PIGEON_TOKEN": "  "})
    assert blank.token is not None
    assert blank.token.get_secret_value() == "from-file"


def test_the_variable_that_set_a_bad_value_is_named_and_the_value_never_shown() -> None:
    with pytest.raises(ConfigError) as caught:
        PigeonSettings.from_table({}, environ={"PIGEON_PORT": "s3cret-port"})
    message = str(caught.value)
    assert message.startswith("[channels.pigeon] port: Input should be a valid integer")
    assert message.endswith("(from the environment variable PIGEON_PORT)")
    assert "s3cret-port" not in message


def test_every_problem_is_named_on_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        PigeonSettings.from_table({"port": 70000, "colour": "blue"}, environ={})
    assert str(caught.value) == (
        "[channels.pigeon] port: Input should be less than or equal to 65535; "
        "colour: unknown option; see config.example.toml"
    )


def test_a_check_of_the_whole_table_reads_like_the_others() -> None:
    with pytest.raises(ConfigError) as caught:
        PigeonSettings.from_table({"relay": "r"}, environ={})
    assert str(caught.value) == "[channels.pigeon] relay needs a token"


class RelaySettings(PluginSettings):
    section: ClassVar[str] = "channels.relay"

    api_base: HttpRoot | None = None
    token: SecretStr | None = None


def test_secret_is_the_value_of_a_secret_option_or_blank_when_unset() -> None:
    assert RelaySettings.from_table({"token": "t0k"}).secret("token") == "t0k"
    assert RelaySettings.from_table({}).secret("token") == ""


def test_an_http_root_is_kept_without_its_trailing_slash() -> None:
    settings = RelaySettings.from_table({"api_base": "https://127.0.0.1:8080/bot/"})
    assert settings.api_base == "https://127.0.0.1:8080/bot"
    assert RelaySettings.from_table({"api_base": "http://h"}).api_base == "http://h"


@pytest.mark.parametrize(
    "url",
    [
        "",
        "127.0.0.1:8080",
        "ftp://h",
        "http://",
        "http:///path",
        " http://h",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http:// h",
        "HTTP://h",
    ],
)
def test_an_http_root_that_is_not_an_http_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RelaySettings.from_table({"api_base": url})
    assert str(caught.value).startswith(
        "[channels.relay] api_base: Value error, must be an http(s) URL"
    )


@pytest.mark.parametrize("table", [3, "text", ["a"]])
def test_a_table_that_is_not_a_table_is_refused(table: object) -> None:
    with pytest.raises(ConfigError, match=r"^\[channels\.pigeon\] must be a table of options"):
        PigeonSettings.from_table(table, environ={})


def test_from_config_reads_the_section_under_channels_tools_or_skills() -> None:
    class Gadget(PluginSettings):
        section: ClassVar[str] = "tools.gadget"
        size: int = 1

    class Mode(PluginSettings):
        section: ClassVar[str] = "skills.mode"
        depth: int = 1

    config = Settings.model_validate(
        {
            "channels": {"pigeon": {"port": 7}},
            "tools": {"gadget": {"size": 2}},
            "skills": {"mode": {"depth": 3}},
        }
    )
    assert PigeonSettings.from_config(config, environ={}).port == 7
    assert Gadget.from_config(config).size == 2
    assert Mode.from_config(config).depth == 3
    assert PigeonSettings.from_config(Settings(), environ={}) == PigeonSettings()


def installed_settings() -> list[type[PluginSettings]]:
    host = PluginHost.load()
    return [model for _, model in host.collect("register_settings", lambda m: m.section)]


def test_every_installed_plugin_reports_settings_errors_the_same_way() -> None:
    models = installed_settings()
    sections = {model.section for model in models}
    assert {"tools.browser", "tools.docker", "skills.wasm", "channels.web"} <= sections
    for model in models:
        with pytest.raises(ConfigError) as caught:
            model.from_table({"no_such_option": 1}, environ={})
        assert str(caught.value) == (
            f"[{model.section}] no_such_option: unknown option; see config.example.toml"
        ), model


class Registering:
    @hookimpl
    def register_settings(self, register: Callable[[type[PluginSettings]], None]) -> None:
        register(PigeonSettings)


def test_openpista_plugins_checks_registered_tables_and_reports_a_twin() -> None:
    host = PluginHost.load(builtins=False, entry_points=False)
    host.add("pigeon", Registering())
    host.add("twin", Registering())
    check_settings(host, Settings.model_validate({"channels": {"pigeon": {"port": -1}}}))
    assert host.reports["pigeon"].registered == {"settings": ["[channels.pigeon]"]}
    (problem,) = host.reports["pigeon"].errors
    assert problem.startswith("[channels.pigeon] port: Input should be greater than or equal")
    assert host.reports["twin"].errors == [
        "settings [channels.pigeon] are already registered by pigeon"
    ]


class PigeonChannel:
    """Registers the pigeon settings and a channel factory that records what it is handed."""

    def __init__(self) -> None:
        self.handed: list[object] = []

    @hookimpl
    def register_settings(self, register: Callable[[type[PluginSettings]], None]) -> None:
        register(PigeonSettings)

    @hookimpl
    def register_channels(self, register: Callable[[str, Any], None]) -> None:
        def factory(options: object, config: Settings) -> Any:
            self.handed.append(options)
            return LoopbackAdapter("pigeon:")

        register("pigeon", factory)


def test_a_channel_factory_is_handed_its_table_validated_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIGEON_TOKEN", "from-env")
    plugin = PigeonChannel()
    host = PluginHost.load(builtins=False, entry_points=False)
    host.add("pigeon", plugin)
    config = Settings.model_validate({"channels": {"pigeon": {"enabled": True, "port": 9}}})
    context = PluginContext(config)
    check_settings(host, config, context)
    factory = channel_factories(host, context)["pigeon"]
    factory(config.channels["pigeon"], config)
    factory(config.channels["pigeon"], config)
    first, second = plugin.handed
    assert isinstance(first, PigeonSettings)
    assert first is second is context.settings(PigeonSettings)  # validated once
    assert first.port == 9
    assert first.token is not None
    assert first.token.get_secret_value() == "from-env"  # the declared override


def test_an_invalid_channel_table_raises_the_one_error_and_never_reaches_the_factory() -> None:
    plugin = PigeonChannel()
    host = PluginHost.load(builtins=False, entry_points=False)
    host.add("pigeon", plugin)
    config = Settings.model_validate({"channels": {"pigeon": {"enabled": True, "colour": 1}}})
    context = PluginContext(config)
    check_settings(host, config, context)
    expected = "[channels.pigeon] colour: unknown option; see config.example.toml"
    assert host.reports["pigeon"].errors == [expected]
    factory = channel_factories(host, context)["pigeon"]
    for _ in range(2):  # the same error each time, from one validation
        with pytest.raises(ConfigError, match=r"^\[channels\.pigeon\] colour: unknown option"):
            factory(config.channels["pigeon"], config)
    assert plugin.handed == []


def test_a_channel_without_a_settings_model_gets_its_raw_table() -> None:
    class Bare:
        handed: ClassVar[list[object]] = []

        @hookimpl
        def register_channels(self, register: Callable[[str, Any], None]) -> None:
            register("bare", lambda options, config: Bare.handed.append(options))

    host = PluginHost.load(builtins=False, entry_points=False)
    host.add("bare", Bare())
    config = Settings.model_validate({"channels": {"bare": {"enabled": True, "x": 1}}})
    channel_factories(host, PluginContext(config))["bare"](config.channels["bare"], config)
    assert Bare.handed == [{"enabled": True, "x": 1}]


def test_a_factory_still_calling_from_table_gets_the_validated_settings_back() -> None:
    validated = PigeonSettings.from_table({"port": 7}, environ={})
    assert PigeonSettings.from_table(validated) is validated  # what a factory is handed now
    with pytest.raises(ConfigError, match="must be a table of options"):
        PigeonSettings.from_table(Settings())
