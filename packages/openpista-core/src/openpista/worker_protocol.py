"""The worker report protocol, version 1: what a worker sends and what the daemon answers.

A worker sends one :class:`ReportEnvelope` per event of its task (``started``, ``progress``
with log lines and a percentage, then one ``finished`` or ``failed``), as JSON, with its
task credential; the daemon answers one :class:`Ack`. The same JSON travels over every
transport (``POST /api/worker-report``, the docker unix socket, QUIC). ``report_id`` is
chosen by the worker, unique within its task: sending the same ``(task_id, report_id)``
again is answered ``duplicate`` and stored once, so a worker may retry anything it has no
ACK for. See docs/workers.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from openpista.models import Attachment
from openpista.workers import WorkerReport, check_attachment

SCHEMA_VERSION = 1
"""The ``v`` of the envelopes and ACKs described here."""

MAX_LOG_LINES = 200
MAX_LOG_LINE_CHARS = 4_000
MAX_OUTPUT_CHARS = 200_000
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
FINAL_REPORT_ID = "final"
"""The ``report_id`` of a report in the original, unversioned format (see
:meth:`ReportEnvelope.from_report`): a task has one, so a resent one is ``duplicate``."""

ReportKind = Literal["started", "progress", "finished", "failed"]
FINAL_KINDS: frozenset[str] = frozenset({"finished", "failed"})

AckResult = Literal["accepted", "duplicate", "unknown_task", "expired", "invalid", "too_large"]
HTTP_STATUS: dict[str, int] = {
    "accepted": 200,
    "duplicate": 200,
    "unknown_task": 403,
    "expired": 410,
    "invalid": 400,
    "too_large": 413,
}
"""The HTTP status answered with each ACK result (``unknown_task`` without any credential
is ``401``)."""


class ReportEnvelope(BaseModel):
    """One report of a worker about its task (schema version 1).

    ``log`` lines and ``percent`` describe progress; ``exit_code``, ``output`` and
    ``attachments`` the outcome (``finished`` or ``failed``). Attachments follow the rules
    of :class:`openpista.workers.WorkerReport` (inline base64 ``data`` or a ``path`` of the
    task's output directory, never a URL). ``dropped`` is how many earlier reports the
    worker's client had to drop from its full offline queue.
    """

    model_config = ConfigDict(extra="forbid")

    v: Literal[1] = 1
    task_id: str = Field(pattern=ID_PATTERN)
    report_id: str = Field(pattern=ID_PATTERN)
    kind: ReportKind
    sent_at: float | None = None
    log: list[str] = Field(default_factory=list, max_length=MAX_LOG_LINES)
    percent: float | None = Field(default=None, ge=0, le=100)
    exit_code: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    output: str = Field(default="", max_length=MAX_OUTPUT_CHARS)
    attachments: list[Attachment] = Field(default_factory=list, max_length=32)
    dropped: int = Field(default=0, ge=0, le=2**31 - 1)

    @field_validator("log")
    @classmethod
    def _short_lines(cls, lines: list[str]) -> list[str]:
        for line in lines:
            if len(line) > MAX_LOG_LINE_CHARS:
                raise ValueError(f"a log line is longer than {MAX_LOG_LINE_CHARS} characters")
        return lines

    @field_validator("attachments")
    @classmethod
    def _inline_or_relative(cls, attachments: list[Attachment]) -> list[Attachment]:
        for item in attachments:
            check_attachment(item)
        return attachments

    @property
    def final(self) -> bool:
        """Whether this report ends its task (``finished`` or ``failed``)."""
        return self.kind in FINAL_KINDS

    @classmethod
    def from_report(cls, report: WorkerReport) -> ReportEnvelope:
        """The envelope of a report in the original format (a
        :class:`~openpista.workers.WorkerReport`, no ``v``: the docker socket's and the
        ``worker_report`` QUIC frame's): the task's final report, ``report_id``
        :data:`FINAL_REPORT_ID`. ``ValidationError`` when it breaks this schema's limits."""
        return cls.model_validate(
            {
                "task_id": report.task_id,
                "report_id": FINAL_REPORT_ID,
                "kind": "failed" if report.status == "error" else "finished",
                "exit_code": report.exit_code,
                "output": report.output,
                "attachments": report.attachments,
            }
        )


class Ack(BaseModel):
    """The daemon's answer to one report.

    ``accepted`` and ``duplicate`` mean the report is stored (stop sending it); the others
    are NACKs that no retry will change. A transport failure or an HTTP 5xx is the only
    reason to send the same report again.
    """

    v: Literal[1] = 1
    result: AckResult
    task_id: str = ""
    report_id: str = ""
    detail: str = ""

    @property
    def stored(self) -> bool:
        """Whether the report is stored on the daemon (accepted now or before)."""
        return self.result in ("accepted", "duplicate")

    @property
    def http_status(self) -> int:
        """The HTTP status this ACK is sent with."""
        return HTTP_STATUS[self.result]
