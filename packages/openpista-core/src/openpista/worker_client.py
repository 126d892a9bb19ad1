"""Send worker reports to an openpista daemon (standard library only: runs in containers).

A worker knows its task from the environment the orchestrator gave it:
``OPENPISTA_REPORT_URL`` (the daemon's ``POST /api/worker-report``), ``OPENPISTA_TASK_ID``
and ``OPENPISTA_TASK_TOKEN``. Each report gets its ``report_id`` once, so a retry or a
replay can never be stored twice::

    client = ReportClient.from_environment()
    client.send("started")
    client.send("progress", log=["step 1 done"], percent=50)
    client.send("finished", exit_code=0, output="42")

A transient failure (no connection, a timeout, HTTP 5xx) is retried with exponential
backoff and full jitter; when the retries are used up the report goes to the offline queue
(``~/.openpista/report-queue/<task id>/``, the base from ``OPENPISTA_REPORT_QUEUE``), one
file per report,
replayed in order before the next report is sent (or by :meth:`ReportClient.flush`). The
queue is bounded (``max_queued`` reports): when full its oldest report is dropped, and the
number dropped is sent with every later report (``dropped``). A NACK (``unknown_task``,
``expired``, ``invalid``, ``too_large``) is final: that report is not retried.

Reports travel by a :data:`Transport`: HTTP (:func:`http_transport`, the default) or any
other that answers ACKs, such as QUIC (``openpista_mobile.worker.quic_transport``, for
``quic://`` URLs); the retries and the offline queue are the same for every transport.

From a shell: ``python -m openpista.worker_client progress --log "step 1" --percent 50``
(``--help`` lists the options); exit status 0 stored, 2 refused, 3 queued offline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
DEFAULT_QUEUE = "~/.openpista/report-queue"
KINDS = ("started", "progress", "finished", "failed")
_TASK_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class Transient(Exception):
    """The daemon could not be reached or could not store the report: try again later."""


Transport = Callable[[str, dict[str, Any], str], dict[str, Any]]
"""Sends one report (JSON) to a URL with a task token and returns the daemon's ACK (a dict
with ``result``); raises :class:`Transient` when it may be sent again (no connection, a
timeout, the daemon cannot store it now). Called from the client's thread."""


def http_transport(timeout: float = 10.0) -> Transport:
    """``POST`` reports to an ``http://`` URL (``POST /api/worker-report``): a 5xx, a timeout
    or no connection is :class:`Transient`; a 4xx without an ACK is ``invalid``."""

    def post(url: str, report: dict[str, Any], token: str) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310  ReportClient admits only http(s)
            url,
            data=json.dumps(report).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310  http(s) only
                return _ack(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                raise Transient(f"HTTP {exc.code}") from None
            try:
                return _ack(exc.read())
            except Transient:  # not the report endpoint: retrying will not help
                return {"result": "invalid", "detail": f"HTTP {exc.code} without an ACK"}
        except (OSError, TimeoutError) as exc:
            raise Transient(str(exc)) from None

    return post


class ReportClient:
    """Reports of one task to one endpoint, with retries and an offline queue."""

    def __init__(
        self,
        url: str,
        task_id: str,
        token: str,
        *,
        queue_dir: Path | str = DEFAULT_QUEUE,
        max_queued: int = 1000,
        attempts: int = 5,
        base_delay: float = 0.2,
        max_delay: float = 10.0,
        timeout: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[float, str], None] = lambda delay, reason: None,
        transport: Transport | None = None,
    ) -> None:
        self.url = url
        self.task_id = task_id
        self.token = token
        if not _TASK_ID.fullmatch(task_id):
            raise ValueError(f"{task_id[:40]!r} is not a task id")
        self.queue_dir = Path(queue_dir).expanduser() / task_id
        """This task's part of the offline queue (one directory per task: a collector
        reporting for several tasks replays each with its own credential)."""
        self.max_queued = max(1, max_queued)
        self.attempts = max(1, attempts)
        self.base_delay = base_delay
        self.max_delay = max_delay
        if transport is None and not url.startswith(("http://", "https://")):
            # urlopen would read a file: URL (or any scheme it has a handler for) too
            raise ValueError(f"the report URL must be http(s), not {url.split(':', 1)[0]!r}")
        self.transport = transport or http_transport(timeout)
        """How each report travels (HTTP with ``timeout`` unless given)."""
        self.sleep = sleep
        self.on_retry = on_retry
        """Called with the delay and the reason before each retry."""

    @classmethod
    def from_environment(cls, **options: Any) -> ReportClient:
        """A client for the task named by ``OPENPISTA_REPORT_URL``, ``OPENPISTA_TASK_ID``
        and ``OPENPISTA_TASK_TOKEN`` (``KeyError`` naming the one missing)."""
        env = os.environ
        missing = [
            name
            for name in ("OPENPISTA_REPORT_URL", "OPENPISTA_TASK_ID", "OPENPISTA_TASK_TOKEN")
            if not env.get(name)
        ]
        if missing:
            raise KeyError(f"{missing[0]} is not set: this process was not started as a worker")
        options.setdefault("queue_dir", env.get("OPENPISTA_REPORT_QUEUE") or DEFAULT_QUEUE)
        return cls(
            env["OPENPISTA_REPORT_URL"],
            env["OPENPISTA_TASK_ID"],
            env["OPENPISTA_TASK_TOKEN"],
            **options,
        )

    # -- sending ------------------------------------------------------------------------

    def send(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send one report (``fields``: ``log``, ``percent``, ``exit_code``, ``output``,
        ``attachments``) after the queued ones; its ACK, or ``{"result": "queued"}`` when
        it went to the offline queue."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        report = {
            "v": SCHEMA_VERSION,
            "task_id": self.task_id,
            "report_id": f"{time.time_ns():x}-{secrets.token_hex(4)}",
            "kind": kind,
            "sent_at": time.time(),
            **fields,
        }
        if not self.flush():
            self._enqueue(report)
            return {"result": "queued", "report_id": report["report_id"]}
        try:
            return self._deliver(report)
        except Transient:
            self._enqueue(report)
            return {"result": "queued", "report_id": report["report_id"]}

    def flush(self) -> bool:
        """Replay the offline queue in order; ``True`` once it is empty, ``False`` when the
        daemon is still unreachable (the rest stays queued, in order)."""
        for path in self._queued():
            try:
                report = json.loads(path.read_text())
            except (OSError, ValueError):
                path.unlink(missing_ok=True)  # unreadable: nothing to send
                continue
            try:
                self._deliver(report)
            except Transient:
                return False
            path.unlink(missing_ok=True)  # stored, or refused for good
        return True

    def _deliver(self, report: dict[str, Any]) -> dict[str, Any]:
        """Send ``report`` with retries; its ACK, or :class:`Transient` after the last try."""
        report = {**report, "dropped": self.dropped}
        attempt = 0
        while True:
            try:
                return self.transport(self.url, report, self.token)
            except Transient as exc:
                attempt += 1
                if attempt >= self.attempts:
                    raise
                ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
                delay = random.uniform(0, ceiling)  # noqa: S311  retry jitter, not a secret
                self.on_retry(delay, str(exc))
                self.sleep(delay)

    # -- the offline queue ----------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Reports dropped so far from this queue because it was full."""
        try:
            return int((self.queue_dir / "dropped").read_text())
        except (OSError, ValueError):
            return 0

    def queued(self) -> list[dict[str, Any]]:
        """The reports waiting in the offline queue, oldest first."""
        found = []
        for path in self._queued():
            with contextlib.suppress(OSError, ValueError):
                found.append(json.loads(path.read_text()))
        return found

    def _queued(self) -> list[Path]:
        try:
            return sorted(self.queue_dir.glob("*.json"))
        except OSError:
            return []

    def _enqueue(self, report: dict[str, Any]) -> None:
        self.queue_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        waiting = self._queued()
        overflow = len(waiting) + 1 - self.max_queued
        for path in waiting[: max(0, overflow)]:
            path.unlink(missing_ok=True)
            self._write(self.queue_dir / "dropped", str(self.dropped + 1))
        name = f"{time.time_ns():020d}-{secrets.token_hex(3)}.json"
        self._write(self.queue_dir / name, json.dumps(report))

    @staticmethod
    def _write(path: Path, text: str) -> None:
        partial = path.with_name(f".{path.name}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        partial.replace(path)


def _ack(body: bytes) -> dict[str, Any]:
    try:
        ack = json.loads(body)
    except ValueError:
        raise Transient("the answer is not JSON") from None
    if not isinstance(ack, dict) or "result" not in ack:
        raise Transient("the answer is not an ACK")
    return ack


def _say_retry(delay: float, reason: str) -> None:
    message = f"report not delivered ({reason}); retrying in {delay:.2f} s"
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: send one report of the task named by the environment."""
    parser = argparse.ArgumentParser(
        prog="python -m openpista.worker_client", description="Send one worker report."
    )
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--log", action="append", default=[], help="a log line (repeatable)")
    parser.add_argument("--percent", type=float)
    parser.add_argument("--exit-code", type=int)
    parser.add_argument("--output", help="the result text ('-': read stdin)")
    parser.add_argument("--attempts", type=int, default=5, help="tries before queueing")
    parser.add_argument("--base-delay", type=float, default=0.2, help="first backoff, seconds")
    parser.add_argument("--max-delay", type=float, default=10.0, help="longest backoff, seconds")
    args = parser.parse_args(argv)
    fields: dict[str, Any] = {"log": args.log}
    if args.percent is not None:
        fields["percent"] = args.percent
    if args.exit_code is not None:
        fields["exit_code"] = args.exit_code
    if args.output is not None:
        fields["output"] = sys.stdin.read() if args.output == "-" else args.output
    try:
        client = ReportClient.from_environment(
            attempts=args.attempts,
            base_delay=args.base_delay,
            max_delay=args.max_delay,
            on_retry=_say_retry,
        )
    except (KeyError, ValueError) as exc:  # not started as a worker, or a bad task id
        print(f"❌ {exc.args[0]}", file=sys.stderr)
        return 2
    ack = client.send(args.kind, **fields)
    print(json.dumps(ack))
    if ack.get("result") == "queued":
        return 3
    return 0 if ack.get("result") in ("accepted", "duplicate") else 2


if __name__ == "__main__":
    sys.exit(main())
