"""The mobile wire protocol: ALPN, framing, frame types and error codes (docs/channels/mobile.md).

A frame is a 4-byte big-endian unsigned length followed by that many bytes of UTF-8 JSON
holding one object with a ``"type"`` key. Both peers use :class:`FrameDecoder` to cut a
stream's bytes into frames and :func:`encode_frame` to write them; a ``response`` frame (and
a ``push`` frame's ``response``) holds one outbound message of the gateway, read with
:func:`read_outbound`. This module imports no QUIC library: it is the part a client author
re-implements.
"""

from __future__ import annotations

import json
import struct
from enum import IntEnum
from typing import Any

from pydantic import ValidationError

from openpista.jsonsafe import JsonInputError, loads
from openpista.models import Outbound, parse_outbound

ALPN = "openpista-mobile/1"
DEFAULT_PORT = 4433
DEFAULT_MAX_FRAME_BYTES = 8 * 1024 * 1024
HEADER = struct.Struct(">I")
MAX_REQUEST_ID = 128
MAX_REASON = 300  # characters of a hostile frame's explanation that are kept


class AppError(IntEnum):
    """QUIC application error codes, sent in RESET_STREAM, STOP_SENDING and
    CONNECTION_CLOSE frames."""

    NO_ERROR = 0x0
    AUTH_REQUIRED = 0x100  # stream reset: its first frame was not "auth" (nor a worker report)
    UNAUTHORIZED = 0x101  # connection closed: unknown device or wrong token
    FRAME_TOO_LARGE = 0x102  # STOP_SENDING after the error frame of an oversized frame
    SHUTTING_DOWN = 0x103  # connection closed: the daemon stops
    TOO_MANY_UNAUTHENTICATED = 0x104  # connection closed: too many not yet authenticated
    AUTH_TIMEOUT = 0x105  # connection closed: not authenticated within auth_timeout


class ErrorCode:
    """The ``code`` of an error frame (the connection stays usable after any of them)."""

    BAD_JSON = "bad_json"
    FRAME_TOO_LARGE = "frame_too_large"
    BAD_FRAME = "bad_frame"
    UNKNOWN_TYPE = "unknown_type"
    DUPLICATE_REQUEST = "duplicate_request"
    EARLY_DATA = "early_data_needs_request_id"
    BUSY = "busy"
    WORKER_REFUSED = "worker_refused"
    UNAVAILABLE = "unavailable"


class FrameError(Exception):
    """A frame that cannot be used; ``code`` is one of :class:`ErrorCode`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def frame(self) -> dict[str, Any]:
        """The error frame telling the peer what was wrong."""
        return error_frame(self.code, self.message)


def error_frame(code: str, message: str) -> dict[str, Any]:
    """An ``error`` frame."""
    return {"type": "error", "code": code, "message": message}


def encode_frame(frame: dict[str, Any]) -> bytes:
    """One frame on the wire: length prefix and compact UTF-8 JSON."""
    body = json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode()
    return HEADER.pack(len(body)) + body


class FrameDecoder:
    """Cuts one stream's bytes into frames, refusing any longer than ``max_bytes``.

    :meth:`feed` returns the frames completed by ``data``: decoded dicts, or a
    :class:`FrameError` in place of a frame that is not a JSON object. After an oversized
    length prefix the decoder is ``broken``: the rest of the stream cannot be framed.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_bytes = max_bytes
        self.broken = False
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buffer)

    def clear(self) -> None:
        """Drop the bytes of an unfinished frame (the caller ignores the rest of the stream)."""
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any] | FrameError]:
        if self.broken:
            return []
        self._buffer += data
        frames: list[dict[str, Any] | FrameError] = []
        while len(self._buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buffer)
            if length > self.max_bytes:
                self.broken = True
                self._buffer.clear()
                frames.append(
                    FrameError(
                        ErrorCode.FRAME_TOO_LARGE,
                        f"frame of {length} bytes exceeds the limit of {self.max_bytes} bytes",
                    )
                )
                break
            if len(self._buffer) < HEADER.size + length:
                break
            body = bytes(self._buffer[HEADER.size : HEADER.size + length])
            del self._buffer[: HEADER.size + length]
            frames.append(decode_body(body))
        return frames


def decode_body(body: bytes) -> dict[str, Any] | FrameError:
    """A frame's JSON object, or the error explaining why it is not one (``bad_json`` for
    a body that is not UTF-8 JSON or is nested too deeply)."""
    try:
        value = loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return FrameError(ErrorCode.BAD_JSON, f"frame is not UTF-8: {exc}")
    except JsonInputError as exc:
        return FrameError(ErrorCode.BAD_JSON, f"frame is not acceptable JSON: {exc}")
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return FrameError(ErrorCode.BAD_FRAME, 'a frame is a JSON object with a string "type"')
    return value


def read_outbound(data: object) -> Outbound:
    """The outbound message (``kind`` answer, chunk, tool or approval) of a ``response``
    frame or of a ``push`` frame's ``response``; :class:`FrameError` (``bad_frame``, one
    line naming the first problem) for anything else."""
    try:
        return parse_outbound(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "response"
        why = f"not an outbound message: {where}: {first['msg']}"
        raise FrameError(ErrorCode.BAD_FRAME, why[:MAX_REASON]) from None
