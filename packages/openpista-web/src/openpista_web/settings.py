"""``[channels.web]``: the options of the web channel, with environment overrides."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from openpista import PluginSettings

MIB = 1024 * 1024
ENV_TOKEN = "OPENPISTA_WEB_TOKEN"  # noqa: S105  an environment variable's name
ENV_PORT = "OPENPISTA_WEB_PORT"


class WebSettings(PluginSettings):
    """What ``[channels.web]`` may say (every option is in ``config.example.toml``);
    ``OPENPISTA_WEB_TOKEN``/``OPENPISTA_WEB_PORT`` win over the table. Errors name the bad
    key, never its value (it may be the token)."""

    section: ClassVar[str] = "channels.web"
    env: ClassVar[Mapping[str, str]] = {ENV_TOKEN: "token", ENV_PORT: "port"}

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    token: SecretStr | None = None
    cors_origins: list[str] = Field(default_factory=list)
    static_dir: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_frame_bytes: int = Field(default=2 * MIB, ge=1024)
    max_image_bytes: int = Field(default=1 * MIB, ge=1024)
    max_attachments: int = Field(default=4, ge=0)
    ping_interval: float = Field(default=20.0, gt=0)
    ping_timeout: float = Field(default=20.0, gt=0)
    max_auth_failures: int = Field(default=10, ge=0)
    auth_failure_window: float = Field(default=300.0, gt=0)

    @field_validator("static_dir", "tls_cert", "tls_key")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        if self.token is not None and not self.token.get_secret_value().strip():
            raise ValueError(f"token (or {ENV_TOKEN}) is empty")
        return self

    @property
    def tls(self) -> bool:
        """Whether uvicorn serves HTTPS/WSS itself."""
        return self.tls_cert is not None
