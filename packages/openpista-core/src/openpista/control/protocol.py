"""The control socket's wire format: length-prefixed JSON frames, size- and depth-capped.

A frame is a 4-byte big-endian unsigned length, then that many bytes of UTF-8 JSON: one
object whose ``type`` is a string. Frames longer than :data:`MAX_FRAME` bytes or nested
deeper than :data:`MAX_DEPTH` levels are refused (:class:`ProtocolError`). Stdlib only
(with :mod:`openpista.jsonsafe`): the daemon-attached CLI imports it.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from openpista.home import home_dir
from openpista.jsonsafe import JsonInputError, loads

SOCKET_NAME = "control.sock"
MAX_FRAME = 1 << 20
"""The largest frame body, in bytes (1 MiB)."""
MAX_DEPTH = 32
"""The deepest nesting a frame may have; real frames stay under 8."""
HEADER = struct.Struct(">I")

Frame = dict[str, Any]


class ProtocolError(ValueError):
    """A frame that cannot be accepted; its message is safe to send back to the peer."""


def socket_path() -> Path:
    """Where the daemon listens: ``control.sock`` in :func:`~openpista.home.home_dir`."""
    return home_dir() / SOCKET_NAME


def encode(frame: Frame) -> bytes:
    """``frame`` as bytes on the wire (header and body); raises :class:`ProtocolError` when
    its body would exceed :data:`MAX_FRAME`."""
    body = json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame too large ({len(body)} bytes, limit {MAX_FRAME})")
    return HEADER.pack(len(body)) + body


def body_length(header: bytes) -> int:
    """The body length a frame header announces; raises :class:`ProtocolError` past
    :data:`MAX_FRAME` (the connection cannot continue: the body is not read)."""
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ProtocolError(f"frame too large ({length} bytes, limit {MAX_FRAME})")
    return int(length)


def decode(body: bytes) -> Frame:
    """A frame's body as an object with a string ``type``; raises :class:`ProtocolError`
    for malformed JSON, too deep nesting, or anything but such an object."""
    try:
        frame = loads(body, max_bytes=MAX_FRAME, max_depth=MAX_DEPTH)
    except JsonInputError as exc:
        raise ProtocolError(str(exc)) from None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise ProtocolError('a frame must be a JSON object with a string "type"')
    return frame


def error_frame(message: str) -> Frame:
    """The frame that tells the peer what went wrong, as one ``❌`` line."""
    return {"type": "error", "message": message if message.startswith("❌") else f"❌ {message}"}
