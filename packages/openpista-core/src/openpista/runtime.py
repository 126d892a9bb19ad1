"""Assembles what one process needs to run the agent: plugins, providers, tools, skills, memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from openpista.agent import Agent
from openpista.observability.metrics import Recorder
from openpista.observability.tracing import tracing_for
from openpista.observability.usage import UsageMeter
from openpista.plugin_context import DaemonServices, PluginContext
from openpista.plugins import PluginHost, call_async_hooks
from openpista.providers.registry import ProviderRegistry
from openpista.skills.loader import SkillLoader, SkillScan, skill_tools, system_prompt_context
from openpista.tools.registry import ToolRegistry

if TYPE_CHECKING:
    from openpista.channels import ChannelAdapter, ChannelFactory
    from openpista.config import Settings
    from openpista.memory import MemoryStore
    from openpista.plugin_settings import PluginSettings
    from openpista.skills.base import SkillRunner


@dataclass
class Toolbox:
    """The tools, skills and skill runners offered by all plugins, and what went wrong."""

    tools: ToolRegistry
    skills: SkillScan
    runners: dict[str, SkillRunner]
    problems: list[str] = field(default_factory=list)


def build_toolbox(
    host: PluginHost, settings: Settings, context: PluginContext | None = None
) -> Toolbox:
    """Collect tools and skill runners from the plugins and skills from the workspace.

    ``context`` is the runtime's; without one the plugins share a context of their own (for
    callers that only list what is registered). A tool whose name collides with one
    registered earlier is left out and reported against the plugin that offered it.
    """
    context = context or PluginContext(settings)
    registry = ToolRegistry()
    problems: list[str] = []
    for plugin_name, tool in host.collect("register_tools", _tool_label, context):
        try:
            registry.register(tool)
        except ValueError as exc:
            host.report_error(plugin_name, str(exc))
    runners: dict[str, SkillRunner] = {}
    for plugin_name, (mode, runner) in host.collect(
        "register_skill_runners", _runner_label, context
    ):
        if mode in runners:
            host.report_error(plugin_name, f"skill mode {mode!r} is already provided")
            continue
        runners[mode] = runner
    scan = SkillScan(skills=[], problems=[])
    if settings.skills.enabled:
        scan = SkillLoader(settings.workspace).discover()
        problems.extend(scan.problems)
        for skill_tool in skill_tools(scan.skills, runners, settings.skills.timeout):
            try:
                registry.register(skill_tool)
            except ValueError as exc:
                problems.append(f"skill {skill_tool.name}: {exc}")
    problems.extend(host.problems)
    context.tools = registry
    return Toolbox(tools=registry, skills=scan, runners=runners, problems=problems)


def build_providers(host: PluginHost) -> ProviderRegistry:
    """The provider presets offered by all plugins.

    A plugin whose hook raises is reported and left out; a name or alias taken by a preset
    registered earlier is reported against the plugin that offered it.
    """
    registry = ProviderRegistry()
    for plugin_name, preset in host.collect("register_providers", _preset_label):
        known = len(registry.problems)
        registry.register(preset)
        for problem in registry.problems[known:]:
            host.report_error(plugin_name, problem)
    return registry


def settings_models(host: PluginHost) -> dict[str, tuple[str, type[PluginSettings]]]:
    """The settings models the plugins register, by section: ``(plugin name, model)``; a
    section registered by an earlier plugin already is reported against the later one."""
    models: dict[str, tuple[str, type[PluginSettings]]] = {}
    for plugin_name, model in host.collect("register_settings", _settings_label):
        if model.section in models:
            owner = models[model.section][0]
            host.report_error(
                plugin_name, f"settings [{model.section}] are already registered by {owner}"
            )
            continue
        models[model.section] = (plugin_name, model)
    return models


def check_settings(
    host: PluginHost, settings: Settings, context: PluginContext | None = None
) -> None:
    """Validate the configuration table of every registered settings model (once per
    ``context``: :meth:`PluginContext.settings`); a problem is reported against the plugin
    that registered the model."""
    from openpista.config import ConfigError

    context = context or PluginContext(settings)
    for plugin_name, model in settings_models(host).values():
        try:
            context.settings(model)
        except ConfigError as exc:
            host.report_error(plugin_name, str(exc))


def channel_factories(host: PluginHost, context: PluginContext) -> dict[str, ChannelFactory]:
    """The channel factories offered by all plugins, by channel name; a name registered
    earlier by another plugin is reported against the later one, which is left out.

    A channel whose plugin registered the settings model of ``[channels.<name>]`` is built
    from that model, validated once for ``context`` (the factory's first argument), instead
    of the raw table; its table's problems raise :class:`~openpista.ConfigError`."""
    models = settings_models(host)
    factories: dict[str, ChannelFactory] = {}
    for plugin_name, (name, factory) in host.collect("register_channels", _channel_label, context):
        if name in factories:
            host.report_error(plugin_name, f"channel {name!r} is already provided")
            continue
        model = models.get(f"channels.{name}")
        factories[name] = factory if model is None else _validated(factory, model[1], context)
    return factories


def _validated(
    factory: ChannelFactory, model: type[PluginSettings], context: PluginContext
) -> ChannelFactory:
    """``factory`` handed ``model`` validated for ``context`` in place of the raw table."""

    def build(table: Any, config: Settings) -> ChannelAdapter:
        return factory(context.settings(model), config)

    return build


class Runtime:
    """Settings, plugins, providers, tools and memory, opened together and closed together."""

    def __init__(
        self,
        settings: Settings,
        host: PluginHost,
        providers: ProviderRegistry,
        toolbox: Toolbox,
        memory: MemoryStore,
        context: PluginContext,
    ) -> None:
        self.settings = settings
        self.host = host
        self.providers = providers
        self.toolbox = toolbox
        self.memory = memory
        self.context = context
        self.recorder = recorder_for(settings)
        self.recorder.tracing = tracing_for(settings.tracing)
        """What the agent measures: Prometheus metrics with ``[metrics] enabled``, else nothing."""
        self.meter = UsageMeter(memory, settings.budget, self.recorder)
        self._closed = False

    @classmethod
    async def open(cls, settings: Settings, host: PluginHost | None = None) -> Runtime:
        """Load plugins (unless given), collect everything, open and migrate memory."""
        from openpista.memory import MemoryStore

        host = host or PluginHost.load()
        context = PluginContext(settings)
        toolbox = build_toolbox(host, settings, context)
        settings = settings.model_copy(update={"policy": context.policy()})
        providers = build_providers(host)
        memory = await MemoryStore.open(settings.database.url)
        from openpista.providers.embedder import enable_semantic_search

        problem = enable_semantic_search(memory, settings, providers)
        if problem is not None:
            toolbox.problems.append(problem)
        context.memory = memory
        return cls(settings, host, providers, toolbox, memory, context)

    @property
    def problems(self) -> list[str]:
        """Plugin, provider and skill problems worth a warning at start-up."""
        return list(dict.fromkeys([*self.toolbox.problems, *self.host.problems]))

    def agent(self, provider: str | None = None, model: str | None = None) -> Agent:
        """An agent answering with ``provider``/``model`` (defaults from ``[agent]``).

        Raises :class:`openpista.providers.base.ProviderError` when the provider cannot be
        built (no API key, no base URL) and :class:`openpista.config.ConfigError` for an
        unknown provider name.
        """
        llm = self.providers.build(self.settings, provider, model)
        skills = self.toolbox.skills.skills
        context = system_prompt_context(skills) if skills else ""
        return Agent(
            llm,
            self.toolbox.tools,
            self.memory,
            system_prompt=self.settings.agent.system_prompt,
            max_tool_rounds=self.settings.agent.max_tool_rounds,
            history_window=self.settings.agent.history_window,
            context_window=self.settings.agent.context_window,
            context=lambda: context,
            meter=self.meter,
        )

    async def daemon_started(self, services: DaemonServices) -> None:
        """Hand plugins the running daemon (``daemon_started``, ``context.services``)."""
        self.context.services = services
        hook = self.host.pm.hook.daemon_started
        await call_async_hooks(hook(config=self.settings, context=self.context))

    async def daemon_stopping(self) -> None:
        """Tell plugins the daemon begins shutting down (``daemon_stopping``)."""
        hook = self.host.pm.hook.daemon_stopping
        await call_async_hooks(hook(config=self.settings, context=self.context))

    async def close(self) -> None:
        """Let plugins release what they opened (``runtime_closing``, then the context's
        close callbacks), then close the providers' connections and memory. Closing twice does
        nothing more."""
        if self._closed:
            return
        self._closed = True
        try:
            hook = self.host.pm.hook.runtime_closing
            await call_async_hooks(hook(config=self.settings, context=self.context))
            await self.context.close()
        finally:
            try:
                await self.providers.aclose()
            finally:
                self.recorder.tracing.close()
                await self.memory.close()

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def recorder_for(settings: Settings) -> Recorder:
    """A Prometheus recorder when ``[metrics] enabled`` (prometheus_client imported only
    then), else the recorder that keeps nothing."""
    if not settings.metrics.enabled:
        return Recorder()
    from openpista.observability.metrics import PrometheusRecorder

    return PrometheusRecorder()


def _tool_label(tool: Any) -> str:
    return str(tool.name)


def _runner_label(mode: str, runner: Any) -> str:
    return mode


def _preset_label(preset: Any) -> str:
    return str(preset.name)


def _channel_label(name: str, factory: Any) -> str:
    return name


def _settings_label(model: Any) -> str:
    return f"[{model.section}]"
