"""``[channels.whatsapp]``: the WhatsApp channel's options, with environment overrides.

Secrets may come from the environment instead of the file: ``WHATSAPP_ACCESS_TOKEN``,
``WHATSAPP_VERIFY_TOKEN``, ``WHATSAPP_APP_SECRET`` and ``WHATSAPP_PHONE_NUMBER_ID`` beat the
values of the table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from openpista import ConfigError, PluginSettings, WebhookPath

ENV_OVERRIDES = {
    "WHATSAPP_ACCESS_TOKEN": "access_token",
    "WHATSAPP_VERIFY_TOKEN": "verify_token",
    "WHATSAPP_APP_SECRET": "app_secret",
    "WHATSAPP_PHONE_NUMBER_ID": "phone_number_id",
}
REQUIRED_SECRETS = {
    "access_token": "WHATSAPP_ACCESS_TOKEN",
    "verify_token": "WHATSAPP_VERIFY_TOKEN",
    "app_secret": "WHATSAPP_APP_SECRET",
}
DEFAULT_BASE_URL = "https://graph.facebook.com"
_NUMBER_NOISE = re.compile(r"[\s\-().]")


class PhoneNumber(BaseModel):
    """One business phone number: ``[[channels.whatsapp.phone_numbers]]``."""

    model_config = ConfigDict(extra="forbid")

    phone_number_id: str = Field(min_length=1)
    messages_per_second: float | None = Field(default=None, gt=0)

    @field_validator("phone_number_id", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value).strip() if isinstance(value, int | str) else value


class WhatsAppSettings(PluginSettings):
    """Every option of ``[channels.whatsapp]`` (documented in config.example.toml)."""

    section: ClassVar[str] = "channels.whatsapp"
    env: ClassVar[Mapping[str, str]] = ENV_OVERRIDES

    enabled: bool = False
    phone_number_id: str | None = None
    phone_numbers: list[PhoneNumber] = Field(default_factory=list)
    access_token: SecretStr | None = None
    verify_token: SecretStr | None = None
    app_secret: SecretStr | None = None
    webhook_host: str = "127.0.0.1"  # Meta reaches it through a TLS reverse proxy
    webhook_port: int = Field(default=8090, ge=0, le=65535)
    webhook_path: WebhookPath = "/webhook"
    graph_api_version: str = "v21.0"
    base_url: str = DEFAULT_BASE_URL
    allowed_numbers: list[str] = Field(default_factory=list)
    open_to_all: bool = False
    messages_per_second: float = Field(default=80.0, gt=0)
    recipient_interval: float = Field(default=0.5, ge=0)
    max_retries: int = Field(default=5, ge=0)
    retry_base_delay: float = Field(default=1.0, ge=0)
    retry_max_delay: float = Field(default=30.0, ge=0)
    request_timeout: float = Field(default=30.0, gt=0)
    template_name: str | None = None
    template_language: str = "en_US"
    template_text_parameter: bool = False
    max_body_bytes: int = Field(default=3 * 1024 * 1024, ge=1024)
    webhook_answer_timeout: float = Field(default=15.0, gt=0, le=120)
    """Seconds a webhook POST waits for its messages to be submitted before it is answered
    503 (Meta delivers it again; the handling goes on): keep it under Meta's own wait."""
    max_media_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_inline_image_bytes: int = Field(default=4 * 1024 * 1024, ge=0)
    refusal_interval: float = Field(default=3600.0, ge=0)
    dedup_ttl: float = Field(default=86400.0, gt=0)
    dedup_size: int = Field(default=10_000, ge=1)
    operator_channel: str | None = None

    @field_validator("operator_channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        name, colon, chat = value.partition(":")
        if not (name and colon and chat):
            raise ValueError("must be a channel id such as 'telegram:123456'")
        return value

    @field_validator("phone_number_id", mode="before")
    @classmethod
    def _id_text(cls, value: Any) -> Any:
        return str(value).strip() if isinstance(value, int) else value

    @field_validator("allowed_numbers", mode="before")
    @classmethod
    def _numbers(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_NUMBER_NOISE.sub("", str(v)) for v in value]
        return value

    @field_validator("base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def numbers(self) -> list[PhoneNumber]:
        """Every configured phone number, ``phone_number_id`` first, without repeats."""
        found: dict[str, PhoneNumber] = {}
        if self.phone_number_id:
            found[self.phone_number_id] = PhoneNumber(phone_number_id=self.phone_number_id)
        for number in self.phone_numbers:
            found.setdefault(number.phone_number_id, number)
        return list(found.values())


def load_whatsapp_config(table: dict[str, Any]) -> WhatsAppSettings:
    """Validate ``[channels.whatsapp]`` with the environment overrides applied, then
    :func:`checked`."""
    return checked(WhatsAppSettings.from_table(table))


def checked(config: WhatsAppSettings) -> WhatsAppSettings:
    """``config`` once every secret and a phone number are there.

    Raises :class:`ConfigError` naming the option (and its variable) that is missing.
    """
    missing = [
        f"channels.whatsapp.{option} (or ${variable})"
        for option, variable in REQUIRED_SECRETS.items()
        if not config.secret(option)
    ]
    if not config.numbers:
        missing.append(
            "channels.whatsapp.phone_number_id or phone_numbers (or $WHATSAPP_PHONE_NUMBER_ID)"
        )
    if missing:
        raise ConfigError("[channels.whatsapp] needs: " + ", ".join(missing))
    return config
