"""Plugin discovery and the calls into registration hooks.

Plugins come from the ``openpista`` entry-point group; core's own tools, providers and
skill runner are registered the same way from :mod:`openpista.builtins`. A plugin that
fails to import, implements a hook that does not exist (a misspelling), or raises inside a
registration hook is reported in :attr:`PluginHost.reports` and left out; everything else
keeps working.

``OPENPISTA_LOAD_PLUGINS`` chooses which installed plugins load: unset means all, an
empty value means none, otherwise a comma-separated list of entry-point names.
Built-in plugins always load.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from openpista import hookspecs
from openpista.plugin_selection import ENTRY_POINT_GROUP, selected_plugin_names

if TYPE_CHECKING:
    from openpista.entry_points import EntryPoint
    from openpista.plugin_context import PluginContext

log = logging.getLogger(__name__)

BUILTIN_MODULES = (
    "openpista.builtins.providers",
    "openpista.builtins.tools",
    "openpista.builtins.skills",
    "openpista.builtins.channels",
    "openpista.builtins.memory",
)
HOOK_NAMES = frozenset(
    name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "openpista_spec")
)


@dataclass
class PluginReport:
    """What ``openpista plugins`` shows for one plugin."""

    name: str
    module: str
    builtin: bool
    origin: EntryPoint | None = None
    """The entry point it was loaded from (``None``: built in or added directly)."""
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def distribution(self) -> tuple[str | None, str | None]:
        """The name and version of the distribution that installed it (read on use)."""
        return (None, None) if self.origin is None else self.origin.distribution()

    @property
    def loaded(self) -> bool:
        """True when the plugin imported and validated (later hook errors do not unload it)."""
        return bool(self.hooks) or not self.errors

    def as_dict(self) -> dict[str, Any]:
        """The JSON form used by ``openpista plugins --json``."""
        distribution, version = self.distribution
        return {
            "name": self.name,
            "module": self.module,
            "builtin": self.builtin,
            "distribution": distribution,
            "version": version,
            "hooks": self.hooks,
            "registered": self.registered,
            "errors": self.errors,
        }


class PluginHost:
    """The pluggy manager plus a report per plugin; build it with :meth:`load`."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.reports: dict[str, PluginReport] = {}

    @classmethod
    def load(
        cls,
        *,
        builtins: bool = True,
        entry_points: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> PluginHost:
        """Register the built-in plugins and the installed ones that the environment selects."""
        host = cls()
        if builtins:
            for module_name in BUILTIN_MODULES:
                host.add(module_name.rsplit(".", 1)[-1], import_module(module_name), builtin=True)
        if entry_points:
            host._load_entry_points(selected_plugin_names(environ))
        return host

    def _load_entry_points(self, allowed: set[str] | None) -> None:
        if allowed is not None and not allowed:
            return  # none selected: the scan of every installed distribution is skipped
        from openpista.entry_points import entry_points

        for entry_point in entry_points(ENTRY_POINT_GROUP):
            if allowed is not None and entry_point.name not in allowed:
                continue
            report = PluginReport(
                name=entry_point.name,
                module=entry_point.value,
                builtin=False,
                origin=entry_point,
            )
            try:
                plugin = entry_point.load()
            except Exception as exc:  # a broken plugin must not take the agent down
                report.errors.append(f"failed to import: {type(exc).__name__}: {exc}")
                self.reports[report.name] = report
                continue
            self.add(entry_point.name, plugin, report=report)

    def add(
        self,
        name: str,
        plugin: ModuleType | object,
        *,
        builtin: bool = False,
        report: PluginReport | None = None,
    ) -> PluginReport:
        """Validate and register one plugin object; problems go into its report."""
        if report is None:
            report = PluginReport(name=name, module=_module_name(plugin), builtin=builtin)
        self.reports[name] = report
        unknown = self._unknown_hooks(plugin)
        if unknown:
            report.errors.extend(unknown)
            return report
        try:
            self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            report.errors.append(f"invalid plugin: {exc}")
            return report
        report.hooks = self._hooks_of(name)
        return report

    def _unknown_hooks(self, plugin: object) -> list[str]:
        problems = []
        for attr in dir(plugin):
            if self.pm.parse_hookimpl_opts(plugin, attr) is None or attr in HOOK_NAMES:
                continue
            import difflib

            close = difflib.get_close_matches(attr, HOOK_NAMES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"implements unknown hook {attr!r}{hint}")
        return problems

    def _hooks_of(self, plugin_name: str) -> list[str]:
        return sorted(
            hook_name
            for hook_name in HOOK_NAMES
            if any(
                impl.plugin_name == plugin_name
                for impl in getattr(self.pm.hook, hook_name).get_hookimpls()
            )
        )

    def collect(
        self,
        hook_name: str,
        describe: Callable[..., str],
        context: PluginContext | None = None,
        **kwargs: Any,
    ) -> list[tuple[str, Any]]:
        """Call a registration hook plugin by plugin; return ``(plugin name, item)`` pairs.

        Each implementation gets its own ``register`` callback, so what it registers is
        credited to it in its report (``describe`` turns the registered arguments into the
        label shown). An implementation that raises is reported; the others still count.
        An item is the argument given to ``register``, or the tuple of them when several.
        ``context`` (and ``config``, its configuration) goes to implementations declaring
        them; a caller that only lists registrations may give ``config`` alone, and the
        implementations then share a context of this call.
        """
        if context is None and "config" in kwargs:
            from openpista.plugin_context import PluginContext

            context = PluginContext(kwargs["config"])
        if context is not None:
            kwargs = {**kwargs, "context": context, "config": context.config}
        collected: list[tuple[str, Any]] = []
        caller = getattr(self.pm.hook, hook_name)
        # pluggy calls the last registered first; keep registration order instead.
        for impl in caller.get_hookimpls():
            report = self.reports[impl.plugin_name]
            items: list[Any] = []

            def register(*args: Any, _items: list[Any] = items) -> None:
                _items.append(args[0] if len(args) == 1 else args)

            call_kwargs = {**kwargs, "register": register}
            try:
                impl.function(**{arg: call_kwargs[arg] for arg in impl.argnames})
            except Exception as exc:
                report.errors.append(f"{hook_name} failed: {type(exc).__name__}: {exc}")
                continue
            labels = report.registered.setdefault(_registered_kind(hook_name), [])
            for item in items:
                label = describe(*item) if isinstance(item, tuple) else describe(item)
                if label not in labels:
                    labels.append(label)
            collected.extend((impl.plugin_name, item) for item in items)
        return collected

    def report_error(self, plugin_name: str, message: str) -> None:
        """Attach a problem found later (e.g. a name collision) to a plugin's report."""
        report = self.reports.get(plugin_name)
        if report is not None and message not in report.errors:
            report.errors.append(message)

    @property
    def problems(self) -> list[str]:
        """Every plugin problem as one line each, for warnings at start-up."""
        return [f"plugin {r.name}: {e}" for r in self.reports.values() for e in r.errors]


def _registered_kind(hook_name: str) -> str:
    return hook_name.removeprefix("register_")


def _module_name(plugin: object) -> str:
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    return f"{type(plugin).__module__}.{type(plugin).__qualname__}"


async def call_async_hooks(results: list[Any]) -> None:
    """Await what async hook implementations returned; a failing plugin is logged, not fatal."""
    import asyncio  # not at the top: `openpista --help` loads plugins but runs no loop

    for outcome in await asyncio.gather(
        *(r for r in results if asyncio.iscoroutine(r)), return_exceptions=True
    ):
        if isinstance(outcome, Exception):
            log.error("plugin hook failed: %s: %s", type(outcome).__name__, outcome)
