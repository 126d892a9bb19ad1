"""What the mobile client raises, and what the server's QUIC error codes mean to it."""

from __future__ import annotations

from openpista_mobile.protocol import AppError


class MobileError(Exception):
    """The server refused a request (``code``: an error-frame code or a QUIC error number)."""

    def __init__(self, code: str | int, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


class ConnectionLost(MobileError):
    """The connection ended in a way that a new one may fix: the server stopped or
    restarted, went silent, or could not be reached. Requests without an answer may be
    sent again (same ``request_id``) on a new connection."""


class Unreachable(ConnectionLost):
    """Nothing answered at the server's address: no QUIC server listens there (or the
    network drops the packets)."""


class CertificateError(MobileError):
    """The server's certificate is not trusted: ``fingerprint`` is the SHA-256 it showed
    ("" if none), ``pinned`` whether it was compared with a pinned fingerprint (else the
    CA check failed)."""

    def __init__(self, message: str, fingerprint: str, *, pinned: bool) -> None:
        super().__init__("certificate", message)
        self.fingerprint = fingerprint
        self.pinned = pinned


def stream_error(code: int) -> MobileError:
    """What a stream the server reset with ``code`` means."""
    if code == AppError.AUTH_REQUIRED:
        return MobileError(code, "the server wants an auth frame first")
    if code == AppError.FRAME_TOO_LARGE:
        return MobileError(code, "the request was too large")
    return MobileError(code, "the server reset the request")


def connection_error(code: int, reason: str) -> MobileError:
    """What a connection closed with ``code`` means (all but a refusal: ConnectionLost)."""
    if code == AppError.UNAUTHORIZED:
        return MobileError(code, "the server refused the device id or token")
    if code == AppError.SHUTTING_DOWN:
        return ConnectionLost(code, "the server is shutting down")
    if code == AppError.TOO_MANY_UNAUTHENTICATED:
        return ConnectionLost(code, "the server has too many connections waiting to log in")
    if code == AppError.AUTH_TIMEOUT:
        return ConnectionLost(code, "the connection did not authenticate in time")
    return ConnectionLost(code, f"the connection closed{': ' + reason if reason else ''}")
