"""Options set through ``OPENPISTA_*`` variables reach every settings model with their types.

Core's options are typed for pydantic-settings; plugin tables are free-form until the plugin
validates them, so each installed plugin's model is checked here with one boolean, one
integer and one list (or table) from the environment. The plugins without a list option
(mobile, docker, wasm, desktop) get a table or only the two scalars.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from openpista.config import ConfigError, Settings, load_config


@pytest.fixture
def from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """An empty config file and an environment without OPENPISTA_* and channel variables."""
    import os

    for name in list(os.environ):
        if name.upper().startswith(("OPENPISTA_", "WHATSAPP_", "TELEGRAM_")):
            monkeypatch.delenv(name)
    config = tmp_path / "config.toml"
    config.write_text("")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("OPENPISTA_CONFIG", str(config))
    return monkeypatch


def settings_with(env: pytest.MonkeyPatch, **variables: str) -> Settings:
    for name, value in variables.items():
        env.setenv(f"OPENPISTA_{name}", value)
    return load_config()


def test_core_options(from_env: pytest.MonkeyPatch) -> None:
    settings = settings_with(
        from_env,
        TOOLS__SYSTEM_RUN__ENABLED="false",
        AGENT__MAX_TOOL_ROUNDS="4",
        AUTH__OPENAI__SCOPES='["openid", "email"]',
    )
    assert settings.tools.system_run.enabled is False
    assert settings.agent.max_tool_rounds == 4
    assert settings.auth["openai"].scopes == ["openid", "email"]


def test_web(from_env: pytest.MonkeyPatch) -> None:
    from openpista_web.settings import WebSettings

    settings = settings_with(
        from_env,
        CHANNELS__WEB__ENABLED="false",
        CHANNELS__WEB__MAX_ATTACHMENTS="7",
        CHANNELS__WEB__CORS_ORIGINS='["http://127.0.0.1:3000", "http://localhost:3000"]',
    )
    web = WebSettings.from_table(settings.channels["web"])
    assert web.enabled is False
    assert web.max_attachments == 7
    assert web.cors_origins == ["http://127.0.0.1:3000", "http://localhost:3000"]


def test_telegram(from_env: pytest.MonkeyPatch) -> None:
    from openpista_telegram.settings import parse_settings

    settings = settings_with(
        from_env,
        CHANNELS__TELEGRAM__OPEN_TO_ALL="TRUE",
        CHANNELS__TELEGRAM__POLL_TIMEOUT="20",
        CHANNELS__TELEGRAM__ALLOWED_USERS='[42, "alice"]',
    )
    telegram = parse_settings(settings.channels["telegram"], need_token=False)
    assert telegram.open_to_all is True
    assert telegram.poll_timeout == 20
    assert [str(user) for user in telegram.allowed_users] == ["42", "alice"]


def test_whatsapp_keeps_numeric_ids_as_text(from_env: pytest.MonkeyPatch) -> None:
    from openpista_whatsapp.settings import load_whatsapp_config

    settings = settings_with(
        from_env,
        CHANNELS__WHATSAPP__TEMPLATE_TEXT_PARAMETER="true",
        CHANNELS__WHATSAPP__MAX_RETRIES="2",
        CHANNELS__WHATSAPP__ALLOWED_NUMBERS='["15551234567", "15557654321"]',
        CHANNELS__WHATSAPP__PHONE_NUMBER_ID="1234567890",
        CHANNELS__WHATSAPP__ACCESS_TOKEN="graph-token",
        CHANNELS__WHATSAPP__VERIFY_TOKEN="verify-token",
        CHANNELS__WHATSAPP__APP_SECRET="app-secret",
    )
    whatsapp = load_whatsapp_config(settings.channels["whatsapp"])
    assert whatsapp.template_text_parameter is True
    assert whatsapp.max_retries == 2
    assert whatsapp.allowed_numbers == ["15551234567", "15557654321"]
    assert whatsapp.phone_number_id == "1234567890"


def test_mobile_tokens_as_a_table(from_env: pytest.MonkeyPatch) -> None:
    from openpista_mobile.settings import MobileSettings

    settings = settings_with(
        from_env,
        CHANNELS__MOBILE__ENABLED="false",
        CHANNELS__MOBILE__MAX_STREAMS="12",
        CHANNELS__MOBILE__TOKENS='{phone = "token-of-the-phone-0123456789"}',
    )
    mobile = MobileSettings.from_table(settings.channels["mobile"])
    assert mobile.enabled is False
    assert mobile.max_streams == 12
    assert {k: v.get_secret_value() for k, v in mobile.tokens.items()} == {
        "phone": "token-of-the-phone-0123456789"
    }


def test_docker(from_env: pytest.MonkeyPatch) -> None:
    from openpista_docker.settings import DockerSettings

    settings = settings_with(from_env, TOOLS__DOCKER__PULL="false", TOOLS__DOCKER__MEMORY_MB="256")
    docker = DockerSettings.from_config(settings)
    assert (docker.pull, docker.memory_mb) == (False, 256)


def test_wasm(from_env: pytest.MonkeyPatch) -> None:
    from openpista_wasm.settings import WasmSettings

    settings = settings_with(from_env, SKILLS__WASM__CACHE="false", SKILLS__WASM__MEMORY_MB="32")
    wasm = WasmSettings.from_config(settings)
    assert (wasm.cache, wasm.memory_mb) == (False, 32)


def test_browser(from_env: pytest.MonkeyPatch) -> None:
    from openpista_browser.settings import BrowserSettings

    settings = settings_with(
        from_env,
        TOOLS__BROWSER__HEADLESS="false",
        TOOLS__BROWSER__VIEWPORT_WIDTH="800",
        TOOLS__BROWSER__ARGS='["--lang=en", "--mute-audio"]',
    )
    browser = BrowserSettings.from_config(settings)
    assert browser.headless is False
    assert browser.viewport_width == 800
    assert browser.args == ["--lang=en", "--mute-audio"]


def test_desktop(from_env: pytest.MonkeyPatch) -> None:
    from openpista_desktop.settings import DesktopSettings

    settings = settings_with(
        from_env, TOOLS__DESKTOP__ALLOW_INPUT="false", TOOLS__DESKTOP__MAX_WIDTH="640"
    )
    desktop = DesktopSettings.from_config(settings)
    assert (desktop.allow_input, desktop.max_width) == (False, 640)


def test_false_from_the_environment_turns_a_channel_off(
    from_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from openpista.gateway.daemon import enabled_channels
    from openpista.plugin_context import PluginContext
    from openpista.plugins import PluginHost

    (tmp_path / "config.toml").write_text("[channels.web]\nenabled = true\n")
    assert "web" in enabled_channels(PluginHost.load(), PluginContext(load_config()))
    settings = settings_with(from_env, CHANNELS__WEB__ENABLED="false")
    assert "web" not in enabled_channels(PluginHost.load(), PluginContext(settings))


def test_a_bad_plugin_value_names_its_variable(from_env: pytest.MonkeyPatch) -> None:
    from openpista_browser.settings import BrowserSettings

    settings = settings_with(from_env, TOOLS__BROWSER__VIEWPORT_WIDTH="wide")
    with pytest.raises(ConfigError) as caught:
        BrowserSettings.from_config(settings)
    assert "viewport_width" in str(caught.value)
    assert "OPENPISTA_TOOLS__BROWSER__VIEWPORT_WIDTH" in str(caught.value)


def test_a_quoted_or_plain_value_stays_text(from_env: pytest.MonkeyPatch) -> None:
    settings = settings_with(
        from_env,
        CHANNELS__EXAMPLE__NAME="plain words",
        CHANNELS__EXAMPLE__NUMBER="0042",
        CHANNELS__EXAMPLE__BROKEN="[not a list",
    )
    assert settings.channels["example"] == {
        "name": "plain words",
        "number": "0042",
        "broken": "[not a list",
    }
