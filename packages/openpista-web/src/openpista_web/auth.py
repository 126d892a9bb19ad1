"""The web channel's access token: where it comes from, how clients present it, the link.

A browser presents the token in the WebSocket handshake, either as the sub-protocol
``openpista.token.<TOKEN>`` (next to :data:`SUBPROTOCOL`, which the server selects) or as the
query parameter ``?token=``. It is compared in constant time; it is never logged.

With no ``token`` in the config and no ``OPENPISTA_WEB_TOKEN``, one is generated on first use
and kept in ``<home>/web/token`` (mode 0600); ``openpista web link`` prints it as a link.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

from openpista.config import home_dir
from openpista.files import write_private
from openpista_web.settings import WebSettings

SUBPROTOCOL = "openpista.v1"
TOKEN_PREFIX = "openpista.token."  # noqa: S105  a name prefix of the WebSocket protocol, not a token


def token_file() -> Path:
    """Where a generated token is kept."""
    return home_dir() / "web" / "token"


def resolve_token(settings: WebSettings, *, create: bool = True) -> tuple[str, str]:
    """``(token, where it comes from)``: the config/env token, else the stored one.

    With ``create`` a missing stored token is generated and saved (0600).
    """
    if settings.token is not None:
        return settings.token.get_secret_value().strip(), "the config or OPENPISTA_WEB_TOKEN"
    path = token_file()
    try:
        stored = path.read_text().strip()
    except FileNotFoundError:
        stored = ""
    if not stored:
        if not create:
            raise FileNotFoundError(f"no web token yet: {path} does not exist")
        stored = secrets.token_urlsafe(32)
        write_private(path, stored + "\n")
    return stored, str(path)


def offered_token(subprotocols: Iterable[str], query_token: str | None) -> str | None:
    """The token a client presented in its handshake, if any (sub-protocol first)."""
    for protocol in subprotocols:
        if protocol.startswith(TOKEN_PREFIX):
            return protocol[len(TOKEN_PREFIX) :]
    return query_token


def token_matches(offered: str | None, expected: str) -> bool:
    """Constant-time comparison; a missing token never matches."""
    if not offered:
        return False
    return hmac.compare_digest(offered.encode(), expected.encode())


def pairing_link(settings: WebSettings, token: str, host: str | None = None) -> str:
    """``http(s)://host:port/#token=...``: opening it signs the browser in.

    The token travels in the fragment, which browsers never send to the server.
    """
    scheme = "https" if settings.tls else "http"
    name = host or settings.host
    if name in ("0.0.0.0", "::", ""):  # noqa: S104  compares an address, binds nothing
        name = "localhost"
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"
    return f"{scheme}://{name}:{settings.port}/#token={quote(token, safe='')}"
