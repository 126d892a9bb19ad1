"""``[channels.mobile]``: the options of the QUIC endpoint, checked with clear errors."""

from __future__ import annotations

import hmac
import os
import re
import secrets
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator

from openpista import ConfigError, PluginSettings
from openpista_mobile.protocol import DEFAULT_MAX_FRAME_BYTES, DEFAULT_PORT

TOKEN_ENV = "OPENPISTA_MOBILE_TOKEN"  # noqa: S105  an environment variable's name
DEFAULT_DEVICE = "default"
DEVICE_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
MIN_TOKEN_CHARS = 16


class MobileSettings(PluginSettings):
    """The ``[channels.mobile]`` table (see config.example.toml); ``OPENPISTA_MOBILE_TOKEN``
    adds a device to ``tokens`` (:meth:`token_table`)."""

    section: ClassVar[str] = "channels.mobile"
    transport: ClassVar[Literal["tcp", "udp"]] = "udp"  # QUIC

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    tokens: dict[str, SecretStr] = Field(default_factory=dict)
    cert: Path | None = None
    key: Path | None = None
    max_frame_bytes: int = Field(default=DEFAULT_MAX_FRAME_BYTES, ge=1024)
    max_streams: int = Field(default=100, ge=1, le=10_000)
    idle_timeout: float = Field(default=60.0, gt=0)
    replay_window: int = Field(default=4096, ge=16)
    outbox_size: int = Field(default=50, ge=0, le=10_000)
    auth_timeout: float = Field(default=10.0, gt=0, le=300)
    max_unauthenticated_connections: int = Field(default=32, ge=1, le=10_000)
    max_unauthenticated_bytes: int = Field(default=1024 * 1024, ge=4096)

    @field_validator("tokens", mode="before")
    @classmethod
    def _table_or_list(cls, value: Any) -> Any:
        """Accept ``{device = "token"}`` or ``[{device = "...", token = "..."}]``."""
        if isinstance(value, list):
            table: dict[str, Any] = {}
            for index, entry in enumerate(value):
                if not isinstance(entry, dict) or set(entry) != {"device", "token"}:
                    raise ValueError(
                        f"entry {index} must be a table with exactly the keys device and token"
                    )
                device = str(entry["device"])
                if device in table:
                    raise ValueError(f"device {device!r} is listed twice")
                table[device] = entry["token"]
            return table
        return value

    @field_validator("tokens")
    @classmethod
    def _check_tokens(cls, tokens: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for device, token in tokens.items():
            check_device(device)
            if len(token.get_secret_value()) < MIN_TOKEN_CHARS:
                raise ValueError(
                    f"the token of device {device!r} is shorter than {MIN_TOKEN_CHARS} "
                    "characters (make one with: openssl rand -hex 16)"
                )
        return tokens

    def token_table(self) -> dict[str, str]:
        """Device id -> token, with ``OPENPISTA_MOBILE_TOKEN`` (``DEVICE=TOKEN`` or
        ``TOKEN`` for device ``default``) added."""
        table = {device: token.get_secret_value() for device, token in self.tokens.items()}
        extra = os.environ.get(TOKEN_ENV, "").strip()
        if extra:
            device, sep, token = extra.partition("=")
            if not sep:
                device, token = DEFAULT_DEVICE, extra
            try:
                check_device(device)
            except ValueError as exc:
                raise ConfigError(f"{TOKEN_ENV}: {exc}") from None
            if len(token) < MIN_TOKEN_CHARS:
                raise ConfigError(f"{TOKEN_ENV}: the token is shorter than {MIN_TOKEN_CHARS}")
            table[device] = token
        return table


def check_device(device: str) -> str:
    """``device`` if it is a valid device id, else ValueError."""
    if not DEVICE_PATTERN.fullmatch(device):
        raise ValueError(
            f"device id {device[:70]!r} must be 1-64 letters, digits, dots, dashes or underscores"
        )
    return device


class TokenBook:
    """Checks device credentials in constant time; never reveals or logs a token."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self._tokens = {device: token.encode() for device, token in tokens.items()}
        self._dummy = secrets.token_urlsafe(32).encode()

    def __len__(self) -> int:
        return len(self._tokens)

    def knows(self, device: str) -> bool:
        """Whether ``device`` has a token (may ever connect)."""
        return device in self._tokens

    def check(self, device: str, token: str) -> bool:
        """Whether ``token`` is the token of ``device``."""
        expected = self._tokens.get(device, self._dummy)
        return hmac.compare_digest(expected, token.encode()) and device in self._tokens
