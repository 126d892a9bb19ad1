"""OpenTelemetry traces: the span tree of a real turn (SDK in-memory exporter), and the
OTLP/HTTP export to an in-process receiver that decodes the protobuf body."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from openpista.config import TracingSettings
from openpista.observability.tracing import Tracing, tracing_for
from openpista.tools.registry import tool
from openpista_testing.adapters import LoopbackAdapter
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator
from openpista_testing.gateways import Gateways

SECRET_WORDS = "the user's private words"


async def test_a_turn_is_one_trace_with_llm_tool_and_send_spans(
    tmp_path: Path, llm_emulator: LlmEmulator, gateways: Gateways
) -> None:
    @tool("probe", "Answer pong.")
    async def probe() -> str:
        return "pong"

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    chat = LoopbackAdapter("t:")
    gateway = await gateways.start(emulator_settings(llm_emulator, tmp_path), chat, approvals=False)
    gateway.runtime.toolbox.tools.register(probe)
    gateway.recorder.tracing = Tracing(provider)
    llm_emulator.reply_tool_calls([("probe", {})], usage=(300, 10))
    llm_emulator.reply_text("pong it is", usage=(320, 12))
    await chat.say("1", SECRET_WORDS)
    assert (await chat.answer("1")).text == "pong it is"
    spans = exporter.get_finished_spans()
    [turn] = [s for s in spans if s.name == "openpista.turn"]
    assert turn.parent is None
    assert turn.attributes is not None
    assert turn.attributes["openpista.channel"] == "t"
    children = [s for s in spans if s is not turn]
    assert {s.context.trace_id for s in spans} == {turn.context.trace_id}  # one trace
    assert all(s.parent is not None and s.parent.span_id == turn.context.span_id for s in children)
    names = [s.name for s in children]
    assert names.count("chat gpt-4o-mini") == 2
    assert names.count("execute_tool probe") == 1
    assert names.count("send answer") == 1
    assert names.count("send tool") == 2  # the tool's start and result; chunks get no span
    first = next(s for s in children if s.name == "chat gpt-4o-mini")
    assert first.attributes is not None
    assert dict(first.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 300,
        "gen_ai.usage.output_tokens": 10,
    }
    tool_span = next(s for s in children if s.name == "execute_tool probe")
    assert tool_span.attributes is not None
    assert tool_span.attributes["gen_ai.tool.name"] == "probe"
    for span in spans:  # no message text in any attribute
        assert SECRET_WORDS not in repr(dict(span.attributes or {}))


async def test_a_failed_llm_request_marks_its_span(
    tmp_path: Path, llm_emulator: LlmEmulator, gateways: Gateways
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    chat = LoopbackAdapter("t:")
    gateway = await gateways.start(emulator_settings(llm_emulator, tmp_path), chat, approvals=False)
    gateway.recorder.tracing = Tracing(provider)
    llm_emulator.reply_error(400, "bad request")
    await chat.say("1", "hi")
    assert (await chat.answer("1")).is_error
    [llm] = [s for s in exporter.get_finished_spans() if s.name.startswith("chat ")]
    assert llm.attributes is not None
    assert llm.attributes["error.type"] == "bad_request"
    assert not llm.status.is_ok


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    received: list[tuple[str, bytes]] = []
    handler = type("Handler", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", received
    server.shutdown()
    server.server_close()
    thread.join()


def test_spans_are_exported_over_otlp_http(
    receiver: tuple[str, list[tuple[str, bytes]]],
) -> None:
    url, received = receiver
    assert not tracing_for(TracingSettings()).enabled
    tracing = tracing_for(TracingSettings(otlp_endpoint=url, service_name="pista-test"))
    with tracing.span("openpista.turn"), tracing.span("chat m", {"gen_ai.request.model": "m"}):
        pass
    tracing.close()  # flushes the batch
    tracing.close()
    [(path, body)] = received
    assert path == "/v1/traces"
    request = ExportTraceServiceRequest.FromString(body)
    [resource_spans] = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "pista-test"
    names = sorted(s.name for scope in resource_spans.scope_spans for s in scope.spans)
    assert names == ["chat m", "openpista.turn"]
