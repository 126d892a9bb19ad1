"""The ``X-Hub-Signature-256`` header of Meta's webhooks: HMAC-SHA256 of the raw body."""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Hub-Signature-256"
PREFIX = "sha256="


def sign(body: bytes, app_secret: str) -> str:
    """The header value Meta sends for ``body``: ``sha256=<hex digest>``."""
    return PREFIX + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, app_secret: str) -> bool:
    """Whether ``header`` is the signature of ``body`` (constant-time compare)."""
    if not header or not header.startswith(PREFIX) or not app_secret:
        return False
    return hmac.compare_digest(sign(body, app_secret).encode(), header.strip().encode())
