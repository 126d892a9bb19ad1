"""OpenTelemetry traces, opt-in: one trace per turn, with a span for each LLM request, each
tool call and each message sent to the channel.

Off (no ``[tracing] otlp_endpoint``), :class:`Tracing` hands out a do-nothing span and the
OpenTelemetry SDK is never imported. On, spans go to an OTLP/HTTP collector in batches,
under the resource ``service.name = [tracing] service_name``. The LLM and tool spans follow
the GenAI semantic conventions: ``chat {model}`` with ``gen_ai.operation.name``,
``gen_ai.provider.name``, ``gen_ai.request.model`` and ``gen_ai.usage.input_tokens`` /
``output_tokens``; ``execute_tool {name}`` with ``gen_ai.tool.name`` and
``gen_ai.tool.call.id``. Span attributes never carry message text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from openpista.config import TracingSettings

AttributeValue = str | int | float | bool


class Span:
    """A span being recorded: :meth:`set` adds attributes (nothing when tracing is off)."""

    def __init__(self, span: Any = None) -> None:
        self._span = span

    def set(self, attributes: Mapping[str, AttributeValue]) -> None:
        """Add ``attributes`` to the span."""
        if self._span is not None:
            self._span.set_attributes(attributes)


_OFF = Span()


class Tracing:
    """Opens the spans of the agent's work; without a provider every span is a no-op."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("openpista") if provider is not None else None

    @property
    def enabled(self) -> bool:
        """Whether spans are recorded."""
        return self._tracer is not None

    @contextlib.contextmanager
    def span(
        self, name: str, attributes: Mapping[str, AttributeValue] | None = None
    ) -> Iterator[Span]:
        """A span named ``name``, child of the current one (a turn's spans nest under it);
        an exception leaving it is recorded on it."""
        if self._tracer is None:
            yield _OFF
            return
        from opentelemetry import context, trace

        # What start_as_current_span does, one context manager fewer (spans are per message).
        span = self._tracer.start_span(name, attributes=attributes)
        token = context.attach(trace.set_span_in_context(span))
        try:
            yield Span(span)
        except Exception as exc:  # not BaseException: a cancelled turn is no error
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            context.detach(token)
            span.end()

    def close(self) -> None:
        """Export what is left and stop (idempotent)."""
        provider, self.provider, self._tracer = self.provider, None, None
        if provider is not None:
            provider.shutdown()


NO_TRACING = Tracing()
"""The tracing of an agent without a meter: every span a no-op."""


def tracing_for(settings: TracingSettings) -> Tracing:
    """Tracing exporting to ``settings.otlp_endpoint``, or the no-op one without it;
    ``ImportError`` names the extra to install when the SDK is missing."""
    if not settings.otlp_endpoint:
        return Tracing()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ImportError(
            f"[tracing] otlp_endpoint needs the OpenTelemetry SDK ({exc.name} is missing): "
            "pip install 'openpista-core[tracing]'"
        ) from None
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint))
    )
    return Tracing(provider)
