#!/usr/bin/env python3
"""Send a worker report to the orchestrating openpista session (runs inside the sandbox).

Mounted into every container as ``/run/openpista/report``; needs only Python's standard
library, so any image with ``python3`` can use it::

    python3 /run/openpista/report "the answer is 42"
    echo "long result" | python3 /run/openpista/report --status error --exit-code 3 -
    python3 /run/openpista/report --file /out/chart.png "chart attached"

It reads ``OPENPISTA_TASK_ID``, ``OPENPISTA_TASK_TOKEN`` and ``OPENPISTA_REPORT_SOCKET`` from
the environment, POSTs the report to the unix socket (the task's final report, ``report_id``
``final``), prints the ACK and exits 0 when it is stored (``accepted``, or ``duplicate`` for
a resend), 1 otherwise (a NACK, or 503: nothing stored, run it again).
"""

import argparse
import base64
import http.client
import json
import mimetypes
import os
import socket
import sys


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("worker", timeout=30)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self._path)


def main(argv: "list[str] | None" = None) -> int:
    """Parse the command line, send the report, print the ACK; 0 when it is stored."""
    parser = argparse.ArgumentParser(description="Report this task's result to openpista.")
    parser.add_argument("output", help="the result text, or - to read it from stdin")
    parser.add_argument("--status", choices=("ok", "error"), default="ok")
    parser.add_argument("--exit-code", type=int, default=None)
    parser.add_argument("--file", action="append", default=[], help="attach a file")
    args = parser.parse_args(argv)
    try:
        task_id = os.environ["OPENPISTA_TASK_ID"]
        token = os.environ["OPENPISTA_TASK_TOKEN"]
        path = os.environ.get("OPENPISTA_REPORT_SOCKET", "/run/openpista/worker.sock")
    except KeyError as exc:
        print(f"report: {exc.args[0]} is not set (not an openpista task?)", file=sys.stderr)
        return 2
    output = sys.stdin.read() if args.output == "-" else args.output
    attachments = []
    for name in args.file:
        with open(name, "rb") as handle:
            data = base64.b64encode(handle.read()).decode()
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        attachments.append({"name": os.path.basename(name), "mime_type": mime, "data": data})
    report = {
        "task_id": task_id,
        "status": args.status,
        "exit_code": args.exit_code,
        "output": output,
        "attachments": attachments,
    }
    connection = _UnixConnection(path)
    try:
        connection.request(
            "POST",
            "/report",
            body=json.dumps(report).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        answer = response.read().decode(errors="replace")
    except OSError as exc:
        print(f"report: cannot reach {path}: {exc}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    print(answer)
    return 0 if response.status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
