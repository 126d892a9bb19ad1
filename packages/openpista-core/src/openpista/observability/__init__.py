"""Observability: token usage and cost (``usage``), budgets (``budget``), Prometheus metrics
(``metrics``, ``metrics_server``), JSON logs with redaction (``logs``) and OpenTelemetry
traces (``tracing``). See docs/observability.md.

Nothing here imports prometheus_client or opentelemetry at import time: they are loaded
only when ``[metrics]`` or ``[tracing]`` is enabled.
"""
