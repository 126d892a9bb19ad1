"""What the agent measures, and the Prometheus metrics it becomes when ``[metrics]`` is on.

The gateway, the agent and the usage meter report to a :class:`Recorder`; the base class
drops everything (metrics off: no cost, prometheus_client never imported).
:class:`PrometheusRecorder` keeps the metrics in its own registry, with the standard process
and platform collectors, and reads the gateway's gauges (queue depth, turns in flight,
approvals pending, active sessions) when scraped.

Labels stay low-cardinality: channel names (``telegram``, never ``telegram:42``), provider,
model and tool names, outcomes and error kinds; never session ids or user text. A label
takes at most :data:`MAX_LABEL_VALUES` distinct values (a chat can ``/model`` any name):
later ones are counted as ``other``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from openpista.observability.tracing import Tracing

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from openpista.models import Usage

MAX_LABEL_VALUES = 64
MAX_CACHED_CHILDREN = 4096
"""Label combinations whose metric child is kept at hand (past it: looked up each time)."""
ACTIVE_WINDOW = 15 * 60.0
"""A session counts as active for this many seconds after its last turn."""
_CHANNEL_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def channel_name(channel_id: str) -> str:
    """The channel of a chat id (``telegram`` for ``telegram:42``), ``other`` if unusual."""
    name = channel_id.partition(":")[0]
    return name if _CHANNEL_NAME.match(name) else "other"


class Recorder:
    """Receives what the agent measures; this one keeps nothing (metrics off)."""

    enabled = False

    def __init__(self) -> None:
        self.tracing = Tracing()
        """The OpenTelemetry spans of the same work (no-ops unless ``[tracing]`` is on)."""

    def turn(self, channel: str, session_id: str, seconds: float, outcome: str) -> None:
        """A turn of ``channel`` answered (``outcome`` ``ok`` or ``error``) in ``seconds``."""

    def llm_call(
        self, provider: str, model: str, seconds: float, first_token: float | None, outcome: str
    ) -> None:
        """An LLM request ended (``ok`` or a provider error kind)."""

    def tokens(
        self, provider: str, model: str, channel: str, usage: Usage, cost: float | None
    ) -> None:
        """An LLM response used ``usage`` (costing ``cost`` USD, if known) for ``channel``."""

    def tool_call(self, tool: str, outcome: str, seconds: float) -> None:
        """A tool call ended: ``ok``, ``error``, ``denied`` or ``timeout``."""

    def error(self, kind: str) -> None:
        """Something failed: a provider error kind, ``turn``, ``send``, ``channel``, ..."""

    def channel_up(self, channel: str, up: bool) -> None:
        """Channel ``channel`` started (``up``) or stopped serving."""

    def channel_restart(self, channel: str) -> None:
        """Channel ``channel`` failed and is being restarted."""

    def watch(self, gateway: Any) -> None:
        """Read ``gateway``'s gauges whenever the metrics are collected."""

    def exposition(self, accept: str) -> tuple[bytes, str] | None:
        """The metrics encoded as the ``Accept`` header ``accept`` asks: ``(body, content
        type)``; ``None`` here (nothing is kept)."""
        return None


class PrometheusRecorder(Recorder):
    """The metrics of one process in their own :attr:`registry` (see the module docs)."""

    enabled = True

    def __init__(self) -> None:
        from prometheus_client import (
            PLATFORM_COLLECTOR,
            CollectorRegistry,
            Counter,
            Histogram,
            ProcessCollector,
        )

        super().__init__()
        self.registry: CollectorRegistry = CollectorRegistry()
        registry = self.registry
        ProcessCollector(registry=registry)
        registry.register(PLATFORM_COLLECTOR)
        self._seen: dict[str, set[str]] = {}
        self._active: dict[str, float] = {}
        self._gateway: Any = None
        self._turns = Histogram(
            "openpista_turn_duration_seconds",
            "Message in to answer out, per channel.",
            ["channel", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._llm = Histogram(
            "openpista_llm_request_duration_seconds",
            "One LLM request, to its last byte.",
            ["provider", "model", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._first_token = Histogram(
            "openpista_llm_time_to_first_token_seconds",
            "LLM request to its first streamed text.",
            ["provider", "model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._tokens = Counter(
            "openpista_llm_tokens",
            "Tokens of LLM requests (input) and responses (output).",
            ["provider", "model", "channel", "direction"],
            registry=registry,
        )
        self._cost = Counter(
            "openpista_llm_cost_usd",
            "USD of priced LLM responses.",
            ["provider", "model", "channel"],
            registry=registry,
        )
        self._tool_calls = Counter(
            "openpista_tool_calls", "Tool calls by outcome.", ["tool", "outcome"], registry=registry
        )
        self._tool_seconds = Histogram(
            "openpista_tool_duration_seconds",
            "Tool call duration.",
            ["tool"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._errors = Counter("openpista_errors", "Failures by kind.", ["kind"], registry=registry)
        self._restarts = Counter(
            "openpista_channel_restarts", "Channel restarts.", ["channel"], registry=registry
        )
        self._up: dict[str, bool] = {}
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        registry.register(_GatewayCollector(self))

    def _child(self, metric: Any, kinds: tuple[str | None, ...], values: tuple[str, ...]) -> Any:
        """``metric``'s child for label ``values`` (each capped by :meth:`_label` under its
        kind; ``None``: a fixed set, such as outcomes), cached: a message's metrics cost a
        dict lookup each, not a ``labels()`` call."""
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            capped = [
                v if k is None else self._label(k, v) for k, v in zip(kinds, values, strict=True)
            ]
            child = metric.labels(*capped)
            if len(self._children) < MAX_CACHED_CHILDREN:  # hostile names stay uncached
                self._children[key] = child
        return child

    def _label(self, kind: str, value: str) -> str:
        seen = self._seen.setdefault(kind, set())
        if value in seen:
            return value
        if len(seen) >= MAX_LABEL_VALUES:
            return "other"
        seen.add(value)
        return value

    def turn(self, channel: str, session_id: str, seconds: float, outcome: str) -> None:
        self._active[session_id] = time.monotonic()
        self._child(self._turns, ("channel", None), (channel, outcome)).observe(seconds)

    def llm_call(
        self, provider: str, model: str, seconds: float, first_token: float | None, outcome: str
    ) -> None:
        labels = (provider, model, outcome)
        self._child(self._llm, ("provider", "model", "outcome"), labels).observe(seconds)
        if first_token is not None:
            kinds = ("provider", "model")
            self._child(self._first_token, kinds, (provider, model)).observe(first_token)

    def tokens(
        self, provider: str, model: str, channel: str, usage: Usage, cost: float | None
    ) -> None:
        kinds = ("provider", "model", "channel", None)
        self._child(self._tokens, kinds, (provider, model, channel, "input")).inc(
            usage.prompt_tokens
        )
        self._child(self._tokens, kinds, (provider, model, channel, "output")).inc(
            usage.completion_tokens
        )
        if cost is not None:
            self._child(self._cost, kinds[:3], (provider, model, channel)).inc(cost)

    def tool_call(self, tool: str, outcome: str, seconds: float) -> None:
        self._child(self._tool_calls, ("tool", None), (tool, outcome)).inc()
        self._child(self._tool_seconds, ("tool",), (tool,)).observe(seconds)

    def error(self, kind: str) -> None:
        self._child(self._errors, ("error",), (kind,)).inc()

    def channel_up(self, channel: str, up: bool) -> None:
        self._up[self._label("channel", channel)] = up

    def channel_restart(self, channel: str) -> None:
        self._child(self._restarts, ("channel",), (channel,)).inc()

    def watch(self, gateway: Any) -> None:
        self._gateway = gateway

    def exposition(self, accept: str) -> tuple[bytes, str] | None:
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    def gauges(self) -> Iterator[Any]:
        """The gauge families read at collection time (see :class:`_GatewayCollector`)."""
        from prometheus_client.core import GaugeMetricFamily

        cutoff = time.monotonic() - ACTIVE_WINDOW
        for session_id, last in list(self._active.items()):  # a copy: scrapes run in a thread
            if last < cutoff:
                self._active.pop(session_id, None)
        yield GaugeMetricFamily(
            "openpista_active_sessions",
            f"Sessions with a turn in the last {ACTIVE_WINDOW:g} s.",
            value=len(self._active),
        )
        up = GaugeMetricFamily(
            "openpista_channel_up", "1 while a channel serves.", labels=["channel"]
        )
        for channel, serving in sorted(dict(self._up).items()):
            up.add_metric([channel], 1.0 if serving else 0.0)
        yield up
        gateway = self._gateway
        if gateway is None:
            return
        for name, text, value in (
            ("openpista_queue_depth", "Inbound events waiting for a turn.", gateway.queue.qsize()),
            ("openpista_turns_in_flight", "Turns running now.", gateway.turns_in_flight),
            (
                "openpista_approvals_pending",
                "Tool calls waiting for approval.",
                gateway.approvals_pending,
            ),
        ):
            yield GaugeMetricFamily(name, text, value=value)


class _GatewayCollector:
    """A prometheus_client collector yielding :meth:`PrometheusRecorder.gauges`."""

    def __init__(self, recorder: PrometheusRecorder) -> None:
        self._recorder = recorder

    def collect(self) -> Iterator[Any]:
        return self._recorder.gauges()

    def describe(self) -> list[Any]:
        return []  # no fixed set: collected afresh every scrape
