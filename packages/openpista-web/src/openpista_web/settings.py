"""``[channels.web]``: the options of the web channel, with environment overrides."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from openpista.config import ConfigError

MIB = 1024 * 1024
ENV_TOKEN = "OPENPISTA_WEB_TOKEN"
ENV_PORT = "OPENPISTA_WEB_PORT"


class WebSettings(BaseModel):
    """What ``[channels.web]`` may say (every option is in ``config.example.toml``)."""

    model_config = ConfigDict(extra="forbid")

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

    @property
    def tls(self) -> bool:
        """Whether uvicorn serves HTTPS/WSS itself."""
        return self.tls_cert is not None

    @classmethod
    def from_table(
        cls, table: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> WebSettings:
        """Read ``[channels.web]``; ``OPENPISTA_WEB_TOKEN``/``OPENPISTA_WEB_PORT`` win.

        Raises :class:`ConfigError` naming the bad key (never its value: it may be the token).
        """
        env = os.environ if environ is None else environ
        data = dict(table)
        if env.get(ENV_TOKEN):
            data["token"] = env[ENV_TOKEN]
        if env.get(ENV_PORT):
            data["port"] = env[ENV_PORT]
        try:
            settings = cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'table'}: {error['msg']}"
                for error in exc.errors(include_input=False)
            )
            raise ConfigError(f"[channels.web] is invalid: {problems}") from None
        if (settings.tls_cert is None) != (settings.tls_key is None):
            raise ConfigError("[channels.web] tls_cert and tls_key must be given together")
        if settings.token is not None and not settings.token.get_secret_value().strip():
            raise ConfigError(f"[channels.web] token (or {ENV_TOKEN}) is empty")
        return settings
