"""What a plugin's hooks get for one runtime: :class:`PluginContext`.

One context lives as long as one :class:`~openpista.runtime.Runtime` (``openpista run``, the
TUI, the daemon). Hooks declare a ``context`` argument to receive it: to share one object
between their tool, skill runner and daemon hooks (:meth:`PluginContext.shared`), to
release it when the runtime closes (:meth:`PluginContext.on_close`), and, in the daemon
hooks, to reach the running daemon (:attr:`PluginContext.services`). Nothing is kept in
module globals, so two runtimes in one process (tests, benchmarks) never share state.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

if TYPE_CHECKING:
    from openpista.config import ConfigError, PolicyRule, PolicySettings, Settings
    from openpista.memory import MemoryStore
    from openpista.models import ChannelEvent
    from openpista.plugin_settings import PluginSettings
    from openpista.tools.registry import ToolRegistry

log = logging.getLogger(__name__)

T = TypeVar("T")
S = TypeVar("S", bound="PluginSettings")


@dataclass(frozen=True)
class DaemonServices:
    """What a plugin may use of the running daemon (``context.services`` in daemon hooks)."""

    submit: Callable[[ChannelEvent], Awaitable[None]]
    """Hand the agent a message as if a channel had sent it; the answer goes to the event's
    ``channel_id`` (that is how ``[[cron]]`` entries reach the agent)."""
    channels: tuple[str, ...]
    """The names of the channels being served."""


class Leadership(Protocol):
    """Roles one replica of a cluster plays at a time (``context.leadership``), such as
    polling a messenger that allows one poller: ``[cluster]``, docs/scale-out.md."""

    def leading(self, role: str) -> bool:
        """Whether this replica plays ``role`` now; the first call makes it a candidate
        (it takes the role when no running replica has it)."""

    async def changed(self, role: str) -> None:
        """Return the next time :meth:`leading` of ``role`` changes."""


class Deliveries(Protocol):
    """The messages a cluster's replicas stored, by their ``ChannelEvent.delivery_id``
    (``context.deliveries``): what a channel that fetches missed messages again (after its
    gateway moved to another replica) starts from. ``channel`` is the channel's name."""

    async def newest(self, channel: str, within: float) -> dict[str, str]:
        """For each chat (its channel id) of ``channel`` with a message stored in the last
        ``within`` seconds: the delivery id of the newest one stored."""

    async def delivered(self, channel: str, delivery_ids: Sequence[str]) -> set[str]:
        """Those of ``delivery_ids`` stored before (their events are dropped if sent again)."""


class PluginContext:
    """The configuration, shared state and close callbacks of one runtime."""

    def __init__(self, config: Settings) -> None:
        self.config = config
        self.services: DaemonServices | None = None
        """Set while the daemon serves (from ``daemon_started`` to ``daemon_stopping``)."""
        self.tools: ToolRegistry | None = None
        """The runtime's tools, set once they are collected (after ``register_tools``). A
        plugin whose tools change at run time changes them here with
        :meth:`~openpista.tools.registry.ToolRegistry.update` (from any thread); the
        agent's next turn offers the LLM the new set."""
        self.memory: MemoryStore | None = None
        """The runtime's memory store, set once it is open (after ``register_tools``)."""
        self.leadership: Leadership | None = None
        """Set in a daemon that is one replica of a cluster (before its channels start);
        ``None`` otherwise: this process is the only one, and plays every role."""
        self.deliveries: Deliveries | None = None
        """Set with :attr:`leadership` (before the channels start): the messages stored
        across the cluster, by delivery id; ``None`` outside a cluster."""
        self._policy_rules: list[PolicyRule] = []
        self._shared: dict[Callable[[PluginContext], Any], Any] = {}
        self._settings: dict[type[PluginSettings], PluginSettings | ConfigError] = {}
        self._on_close: list[Callable[[], Awaitable[None] | None]] = []
        self._closed = False

    def shared(self, factory: Callable[[PluginContext], T]) -> T:
        """The one object ``factory(context)`` makes for this runtime, made on first use.

        Keyed by ``factory``: a plugin's ``register_tools`` and ``register_skill_runners``
        calling ``context.shared(make_sandbox)`` get the same sandbox. A factory that raises
        is called again next time.
        """
        if factory not in self._shared:
            self._shared[factory] = factory(self)
        return cast(T, self._shared[factory])

    def settings(self, model: type[S]) -> S:
        """``model``'s table of this runtime's configuration, validated once (its ``env``
        overrides applied; see :class:`~openpista.PluginSettings`): every hook and channel
        factory asking gets the same object, and an invalid table raises the same
        :class:`~openpista.ConfigError` each time."""
        from openpista.config import ConfigError

        if model not in self._settings:
            try:
                self._settings[model] = model.from_config(self.config)
            except ConfigError as exc:
                self._settings[model] = exc
        found = self._settings[model]
        if isinstance(found, ConfigError):
            raise found
        return cast(S, found)

    def add_policy_rules(self, rules: Iterable[PolicyRule]) -> None:
        """Policy rules a plugin brings for its tools (an MCP server's ``policy``): tried
        after the user's ``[[policy.rules]]`` (which win) and before ``policy.local`` and
        ``policy.remote``. Add them in ``register_tools``: the runtime's policy is fixed
        once its tools are collected."""
        self._policy_rules.extend(rules)

    def policy(self) -> PolicySettings:
        """``[policy]`` with the plugins' rules after the user's: what tool calls of this
        runtime are decided by."""
        base = self.config.policy
        if not self._policy_rules:
            return base
        return base.model_copy(update={"rules": [*base.rules, *self._policy_rules]})

    def on_close(self, callback: Callable[[], Awaitable[None] | None]) -> None:
        """Call ``callback`` (plain or async) once when the runtime closes; callbacks run in
        the reverse order of their registration, after the ``runtime_closing`` hooks."""
        if self._closed:
            raise RuntimeError("the runtime of this plugin context is already closed")
        self._on_close.append(callback)

    async def close(self) -> None:
        """Run the close callbacks (each once; a failing one is logged, the others run)."""
        if self._closed:
            return
        self._closed = True
        while self._on_close:
            callback = self._on_close.pop()
            try:
                outcome = callback()
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:  # one plugin's failure must not keep the others open
                log.error("plugin close callback failed: %s: %s", type(exc).__name__, exc)
