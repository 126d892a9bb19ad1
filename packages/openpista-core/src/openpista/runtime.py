"""Assembles what one process needs to run the agent: plugins, providers, tools, skills, memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from openpista.agent import Agent
from openpista.plugins import PluginHost
from openpista.providers.registry import ProviderRegistry
from openpista.skills.loader import SkillLoader, SkillScan, skill_tools, system_prompt_context
from openpista.tools.registry import ToolRegistry

if TYPE_CHECKING:
    from openpista.config import Settings
    from openpista.memory.store import MemoryStore
    from openpista.skills.base import SkillRunner


@dataclass
class Toolbox:
    """The tools, skills and skill runners offered by all plugins, and what went wrong."""

    tools: ToolRegistry
    skills: SkillScan
    runners: dict[str, SkillRunner]
    problems: list[str] = field(default_factory=list)


def build_toolbox(host: PluginHost, settings: Settings) -> Toolbox:
    """Collect tools and skill runners from the plugins and skills from the workspace.

    A tool whose name collides with one registered earlier is left out and reported
    against the plugin that offered it.
    """
    registry = ToolRegistry()
    problems: list[str] = []
    for plugin_name, tool in host.collect("register_tools", _tool_label, config=settings):
        try:
            registry.register(tool)
        except ValueError as exc:
            host.report_error(plugin_name, str(exc))
    runners: dict[str, SkillRunner] = {}
    for plugin_name, (mode, runner) in host.collect(
        "register_skill_runners", _runner_label, config=settings
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
    return Toolbox(tools=registry, skills=scan, runners=runners, problems=problems)


def build_providers(host: PluginHost) -> ProviderRegistry:
    """The provider presets offered by all plugins."""
    return ProviderRegistry.from_plugins(host.pm)


class Runtime:
    """Settings, plugins, providers, tools and memory, opened together and closed together."""

    def __init__(
        self,
        settings: Settings,
        host: PluginHost,
        providers: ProviderRegistry,
        toolbox: Toolbox,
        memory: MemoryStore,
    ) -> None:
        self.settings = settings
        self.host = host
        self.providers = providers
        self.toolbox = toolbox
        self.memory = memory

    @classmethod
    async def open(cls, settings: Settings, host: PluginHost | None = None) -> Runtime:
        """Load plugins (unless given), collect everything, open and migrate memory."""
        from openpista.memory.store import MemoryStore

        host = host or PluginHost.load()
        toolbox = build_toolbox(host, settings)
        providers = build_providers(host)
        memory = await MemoryStore.open(settings.database.url)
        return cls(settings, host, providers, toolbox, memory)

    @property
    def problems(self) -> list[str]:
        """Plugin, provider and skill problems worth a warning at start-up."""
        return [*self.toolbox.problems, *self.providers.problems]

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
            context=lambda: context,
        )

    async def close(self) -> None:
        """Let plugins release what they opened (``runtime_closing``), then close memory."""
        from openpista.plugins import call_async_hooks

        try:
            await call_async_hooks(self.host.pm.hook.runtime_closing(config=self.settings))
        finally:
            await self.memory.close()

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def _tool_label(tool: Any) -> str:
    return str(tool.name)


def _runner_label(mode: str, runner: Any) -> str:
    return mode
