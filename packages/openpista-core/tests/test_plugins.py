"""Plugin host: registration, attribution, and isolation of broken plugins."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from openpista import hookimpl
from openpista.plugin_context import DaemonServices, PluginContext
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


def sqlite_settings(tmp_path: Any, name: str = "m.db") -> Any:
    from openpista.config import Settings

    return Settings.model_validate({"database": {"url": f"sqlite+aiosqlite:///{tmp_path / name}"}})


class SharingPlugin:
    """A tool and a skill runner on one object per runtime, released when it closes."""

    def __init__(self) -> None:
        self.made: list[object] = []
        self.closed: list[object] = []

    def make_resource(self, context: PluginContext) -> object:
        resource = object()
        self.made.append(resource)

        async def release() -> None:
            self.closed.append(resource)

        context.on_close(release)
        return resource

    @hookimpl
    def register_tools(self, register: Callable[[Any], None], context: PluginContext) -> None:
        from openpista.tools import tool

        resource = context.shared(self.make_resource)

        @tool("sharing.which")
        async def which() -> str:
            """Which resource this runtime uses."""
            return str(id(resource))

        register(which)

    @hookimpl
    def register_skill_runners(
        self, register: Callable[[str, Any], None], context: PluginContext
    ) -> None:
        register("sharing", context.shared(self.make_resource))


async def test_state_is_shared_within_a_runtime_and_not_across_two(tmp_path: Any) -> None:
    from openpista.runtime import Runtime

    plugin = SharingPlugin()
    runtimes = []
    for name in ("a.db", "b.db"):
        host = PluginHost.load(entry_points=False)
        host.add("sharing", plugin)
        runtimes.append(await Runtime.open(sqlite_settings(tmp_path, name), host))
    first, second = runtimes
    assert len(plugin.made) == 2, "one resource per runtime, shared by its tool and runner"
    assert first.toolbox.runners["sharing"] is plugin.made[0]
    assert second.toolbox.runners["sharing"] is plugin.made[1]
    await first.close()
    assert plugin.closed == [plugin.made[0]], "closing one runtime leaves the other's alone"
    await second.close()
    assert plugin.closed == plugin.made


async def test_close_callbacks_run_once_in_reverse_order_and_survive_a_failure(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from openpista.runtime import Runtime

    calls: list[str] = []

    class Closing:
        @hookimpl
        def register_tools(self, context: PluginContext) -> None:
            context.on_close(lambda: calls.append("plain"))

            def fail() -> None:
                raise RuntimeError("cannot release")

            context.on_close(fail)

            async def asynchronous() -> None:
                calls.append("async")

            context.on_close(asynchronous)

    host = PluginHost.load(entry_points=False)
    host.add("closing", Closing())
    runtime = await Runtime.open(sqlite_settings(tmp_path), host)
    await runtime.close()
    await runtime.close()
    assert calls == ["async", "plain"]
    assert "plugin close callback failed: RuntimeError: cannot release" in caplog.text
    with pytest.raises(RuntimeError, match="already closed"):
        runtime.context.on_close(lambda: None)


async def test_daemon_hooks_get_typed_services_while_the_daemon_serves(tmp_path: Any) -> None:
    from openpista.models import ChannelEvent
    from openpista.runtime import Runtime

    seen: list[tuple[str, Any]] = []
    submitted: list[ChannelEvent] = []

    class Watching:
        @hookimpl
        async def daemon_started(self, context: PluginContext) -> None:
            assert context.services is not None
            seen.append(("started", context.services.channels))
            await context.services.submit(ChannelEvent(channel_id="cli:x", sender="me", text="hi"))

        @hookimpl
        async def daemon_stopping(self, context: PluginContext) -> None:
            seen.append(("stopping", context.services))

    async def submit(event: ChannelEvent) -> None:
        submitted.append(event)

    host = PluginHost.load(entry_points=False)
    host.add("watching", Watching())
    async with await Runtime.open(sqlite_settings(tmp_path), host) as runtime:
        await runtime.daemon_started(DaemonServices(submit=submit, channels=("cli",)))
        await runtime.daemon_stopping()
    assert seen[0] == ("started", ("cli",))
    assert seen[1][0] == "stopping"
    assert seen[1][1] is not None
    assert [event.text for event in submitted] == ["hi"]


class RaisingProviders:
    @hookimpl
    def register_providers(self, register: Callable[[Any], None]) -> None:
        raise RuntimeError("no presets today")


def never_built(settings: Any, model: str | None) -> Any:
    raise AssertionError("the duplicate preset is never built")


class DuplicateProvider:
    @hookimpl
    def register_providers(self, register: Callable[[Any], None]) -> None:
        from openpista.providers.base import ProviderPreset

        register(
            ProviderPreset(
                name="OpenAI", factory=never_built, default_model="m", description="copy"
            )
        )


def test_a_raising_provider_plugin_is_reported_and_the_others_still_count() -> None:
    from openpista.runtime import build_providers

    host = PluginHost.load(entry_points=False)
    host.add("raising", RaisingProviders())
    host.add("duplicate", DuplicateProvider())
    registry = build_providers(host)
    assert {"openai", "anthropic", "ollama"} <= set(registry.names())
    assert registry.get("openai").description != "copy", "the first one registered wins"
    assert host.reports["raising"].errors == [
        "register_providers failed: RuntimeError: no presets today"
    ]
    (duplicate,) = host.reports["duplicate"].errors
    assert duplicate.startswith("provider 'OpenAI' is registered twice; the first one is kept")
    assert host.reports["duplicate"].registered == {"providers": ["OpenAI"]}
    assert not host.reports["providers"].errors


def test_a_channel_name_registered_twice_is_reported_against_the_later_plugin() -> None:
    from openpista.config import Settings
    from openpista.runtime import channel_factories

    class SecondCli:
        @hookimpl
        def register_channels(self, register: Callable[[str, Any], None]) -> None:
            register("cli", lambda *_: None)

    host = PluginHost.load(entry_points=False)
    host.add("second", SecondCli())
    factories = channel_factories(host, PluginContext(Settings()))
    assert factories["cli"] is not None
    assert host.reports["second"].errors == ["channel 'cli' is already provided"]
    assert host.reports["second"].registered == {"channels": ["cli"]}


class ChangingPlugin:
    """Registers one tool, and replaces it through ``context.tools`` when told to."""

    def __init__(self) -> None:
        self.context: PluginContext | None = None

    @hookimpl
    def register_tools(self, register: Callable[[Any], None], context: PluginContext) -> None:
        from openpista.tools import tool

        assert context.tools is None, "the registry is handed over once the tools are collected"
        self.context = context

        @tool("changing.first")
        async def first() -> str:
            """The first tool."""
            return "first"

        register(first)

    def change(self) -> list[str]:
        from openpista.tools import tool

        @tool("changing.second")
        async def second() -> str:
            """Added at run time."""
            return "second"

        assert self.context is not None
        assert self.context.tools is not None
        return self.context.tools.update(remove=["changing.first"], add=[second])


async def test_a_plugin_changes_the_running_tools_through_its_context(tmp_path: Any) -> None:
    from openpista.runtime import Runtime

    plugin = ChangingPlugin()
    host = PluginHost.load(entry_points=False)
    host.add("changing", plugin)
    async with await Runtime.open(sqlite_settings(tmp_path), host) as runtime:
        assert runtime.context.tools is runtime.toolbox.tools
        assert "changing.first" in runtime.toolbox.tools
        assert plugin.change() == []
        assert "changing.first" not in runtime.toolbox.tools
        assert "changing.second" in [spec.name for spec in runtime.toolbox.tools.specs()]
