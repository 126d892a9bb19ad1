"""Worker reports over QUIC for :class:`openpista.worker_client.ReportClient`.

The client's retries with backoff and its bounded offline queue are the same as over HTTP;
only the way each report travels differs: a ``worker_envelope`` frame on a fresh connection
to the daemon's QUIC endpoint (``quic://HOST:PORT``), answered with the ACK::

    client = ReportClient(
        "quic://10.0.0.5:4433", task_id, token, transport=quic_transport(fingerprint=pin)
    )
    client.send("progress", log=["half way"], percent=50)

A daemon that is not there (stopped, restarting) or cannot store the report now
(``unavailable``) is :class:`~openpista.worker_client.Transient`: the report is retried,
then queued and replayed in order once the daemon is back. The transport runs its own event
loop per report: from async code, call the client in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from openpista.worker_client import Transient, Transport
from openpista_mobile.client import MobileClient
from openpista_mobile.errors import ConnectionLost, MobileError
from openpista_mobile.protocol import ErrorCode


def quic_transport(
    *,
    fingerprint: str | None = None,
    cafile: str | Path | None = None,
    insecure: bool = False,
    timeout: float = 10.0,
) -> Transport:
    """A :data:`~openpista.worker_client.Transport` sending each report over QUIC, trusting
    the server as :meth:`MobileClient.connect` does (``fingerprint`` pins its certificate,
    ``cafile`` verifies it, ``insecure`` trusts anything: testing only). A certificate the
    client does not trust raises :class:`~openpista_mobile.errors.CertificateError` (the
    report stays queued); an answer that is no ACK is ``invalid``."""

    def send(url: str, report: dict[str, Any], token: str) -> dict[str, Any]:
        return asyncio.run(_send(url, report, token))

    async def _send(url: str, report: dict[str, Any], token: str) -> dict[str, Any]:
        try:
            client = await MobileClient.connect(
                url,
                fingerprint=fingerprint,
                cafile=cafile,
                insecure=insecure,
                early_data=False,
                timeout=timeout,
            )
        except (ConnectionLost, TimeoutError, OSError) as exc:
            raise Transient(str(exc)) from None
        try:
            return await asyncio.wait_for(client.send_report(token, report), timeout)
        except (ConnectionLost, TimeoutError, OSError) as exc:
            raise Transient(str(exc)) from None
        except MobileError as exc:
            if exc.code == ErrorCode.UNAVAILABLE:
                raise Transient(exc.message) from None
            return {"result": "invalid", "detail": exc.message}
        finally:
            await client.close()

    return send
