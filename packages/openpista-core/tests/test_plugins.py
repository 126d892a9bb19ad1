"""Plugin host: registration, attribution, and isolation of broken plugins."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from openpista import hookimpl
from openpista.plugins import PluginHost, selected_plugin_names


class GoodPlugin:
    @hookimpl
    def register_skill_runners(self, register: Callable[[str, Any], None]) -> None:
        register("echo", object())


class MisspelledPlugin:
    @hookimpl
    def register_tool(self, register: Callable[..., None]) -> None:  # should be register_tools
        register(object())


class RaisingPlugin:
    @hookimpl
    def register_skill_runners(self, register: Callable[[str, Any], None]) -> None:
        raise RuntimeError("boom")


class WrongArgumentPlugin:
    @hookimpl
    def register_skill_runners(self, register: Any, unknown_argument: Any) -> None:
        """Asks for an argument the hook does not provide."""


def test_registrations_are_credited_to_their_plugin() -> None:
    host = PluginHost.load(builtins=False, entry_points=False)
    host.add("good", GoodPlugin())
    items = host.collect("register_skill_runners", lambda mode, _runner: mode)
    assert [(plugin, item[0]) for plugin, item in items] == [("good", "echo")]
    assert host.reports["good"].registered == {"skill_runners": ["echo"]}
    assert host.reports["good"].hooks == ["register_skill_runners"]


def test_misspelled_hook_is_reported_with_a_suggestion() -> None:
    host = PluginHost.load(builtins=False, entry_points=False)
    plugin = MisspelledPlugin()
    report = host.add("typo", plugin)
    assert report.errors == [
        "implements unknown hook 'register_tool' (did you mean 'register_tools'?)"
    ]
    assert not host.pm.is_registered(plugin)
    assert host.problems == [f"plugin typo: {report.errors[0]}"]


def test_a_raising_hook_does_not_stop_the_others() -> None:
    host = PluginHost.load(builtins=False, entry_points=False)
    host.add("raising", RaisingPlugin())
    host.add("good", GoodPlugin())
    items = host.collect("register_skill_runners", lambda mode, _runner: mode)
    assert [plugin for plugin, _ in items] == ["good"]
    assert host.reports["raising"].errors == ["register_skill_runners failed: RuntimeError: boom"]


def test_a_hook_asking_for_unknown_arguments_is_rejected() -> None:
    host = PluginHost.load(builtins=False, entry_points=False)
    report = host.add("wrong", WrongArgumentPlugin())
    assert len(report.errors) == 1
    assert "invalid plugin" in report.errors[0]
    assert "unknown_argument" in report.errors[0]


def test_builtin_plugins_register_core_tools_providers_and_runner() -> None:
    from openpista.config import Settings

    host = PluginHost.load(entry_points=False)
    tools = host.collect("register_tools", lambda tool: tool.name, config=Settings())
    providers = host.collect("register_providers", lambda preset: preset.name)
    runners = host.collect("register_skill_runners", lambda mode, _runner: mode, config=Settings())
    assert "system.run" in [tool.name for _, tool in tools]
    names = {preset.name for _, preset in providers}
    assert {"openai", "anthropic", "together", "ollama", "openrouter", "custom"} <= names
    assert [mode for _, (mode, _runner) in runners] == ["subprocess"]
    assert all(report.builtin and not report.errors for report in host.reports.values())


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", set()), ("telegram", {"telegram"}), (" a, b ,,", {"a", "b"})],
)
def test_load_plugins_variable(value: str | None, expected: set[str] | None) -> None:
    environ = {} if value is None else {"OPENPISTA_LOAD_PLUGINS": value}
    assert selected_plugin_names(environ) == expected


async def test_closing_the_runtime_lets_plugins_release_what_they_opened(tmp_path: Any) -> None:
    from openpista.config import Settings
    from openpista.runtime import Runtime

    closed: list[str] = []

    class Releasing:
        @hookimpl
        async def runtime_closing(self, config: Settings) -> None:
            closed.append(config.agent.provider)

    class Failing:
        @hookimpl
        async def runtime_closing(self) -> None:
            raise RuntimeError("cannot close")

    host = PluginHost.load(entry_points=False)
    host.add("releasing", Releasing())
    host.add("failing", Failing())
    settings = Settings.model_validate(
        {"database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"}}
    )
    runtime = await Runtime.open(settings, host)
    await runtime.close()
    assert closed == ["openai"], "a failing plugin does not keep the others from closing"
