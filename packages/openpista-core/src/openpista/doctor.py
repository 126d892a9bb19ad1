"""What plugins add to ``openpista doctor`` (the ``doctor_checks`` hook).

A plugin registers a :class:`DoctorCheck` per thing worth checking online (a channel's
token, an API it calls); ``openpista doctor`` runs them concurrently, each bounded by its
``--timeout``, and prints each :class:`Finding` as one ✓/✗ line with its fix. A check that
cannot reach its service raises :class:`Unreachable` (what :func:`request_json` does), one
that hangs is cut by the timeout, and one that raises anything else is reported against
the plugin: none of them stops the other checks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from openpista.config import Settings

__all__ = [
    "UNREACHABLE_FIX",
    "DoctorCheck",
    "Finding",
    "Unreachable",
    "enabled_channel",
    "request_json",
]

SettingsT = TypeVar("SettingsT")

UNREACHABLE_FIX = "check the network (a proxy, a firewall) and the service's address"
"""The fix a :class:`DoctorCheck` shows by default when its service does not answer."""
REQUEST_TIMEOUT = 60.0
"""The longest :func:`request_json` waits by itself (``--timeout`` cuts it sooner)."""


@dataclass(frozen=True)
class Finding:
    """What a check found: ``ok`` True (✓), False (✗: ``fix`` says what to do) or None
    (does not apply here). ``detail`` is one line and never holds a secret."""

    ok: bool | None
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class DoctorCheck:
    """One online check: ``name`` labels its line (``channel telegram token``), ``run``
    does the work, ``unreachable_fix`` is the fix shown when the service cannot be reached
    or does not answer in time (name the option that sets its address)."""

    name: str
    run: Callable[[], Awaitable[Finding]]
    unreachable_fix: str = UNREACHABLE_FIX


class Unreachable(Exception):
    """The service did not answer: the message says where and why (never a secret)."""


async def request_json(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    data: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    """One HTTP request of a check: its status and JSON body (None when the body is not
    JSON). Waits at most :data:`REQUEST_TIMEOUT` (the doctor cuts sooner); raises
    :class:`Unreachable` naming only the URL's scheme, host and port (a token in the path
    stays out)."""
    import httpx  # not at the top: the plugin modules importing this stay cheap

    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    try:
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as client:
            response = await client.request(method, url, headers=headers, data=data)
    except httpx.TransportError as exc:
        reason = type(exc).__name__ if not str(exc) or url in str(exc) else str(exc)
        raise Unreachable(f"cannot reach {origin}: {reason}") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    return response.status_code, body


def enabled_channel(
    config: Settings, name: str, parse: Callable[[dict[str, Any]], SettingsT]
) -> SettingsT | None:
    """``[channels.NAME]`` as ``parse`` reads it when the channel is enabled and its table
    valid; None otherwise (nothing to check online: the channel's own doctor line reports
    an invalid table)."""
    from openpista.config import ConfigError

    table = config.channels.get(name) or {}
    if not table.get("enabled"):
        return None
    try:
        return parse(table)
    except ConfigError:
        return None
