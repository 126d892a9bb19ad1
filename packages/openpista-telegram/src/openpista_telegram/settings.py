"""The ``[channels.telegram]`` options, validated (every option is in config.example.toml)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator

from openpista import ConfigError, HttpRoot, PluginSettings, WebhookPath, home_dir, write_private

SECTION = "channels.telegram"
TOKEN_VARIABLE = "TELEGRAM_BOT_TOKEN"  # noqa: S105  an environment variable's name
# What @BotFather hands out: the bot's numeric id, a colon, and a secret part.
_TOKEN_SHAPE = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
# What setWebhook accepts as secret_token.
_SECRET_SHAPE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class TelegramSettings(PluginSettings):
    """The Telegram channel's configuration; ``TELEGRAM_BOT_TOKEN`` overrides ``token``."""

    section: ClassVar[str] = SECTION
    env: ClassVar[Mapping[str, str]] = {TOKEN_VARIABLE: "token"}

    enabled: bool = False
    token: SecretStr | None = None
    api_base: HttpRoot | None = None
    """Bot API server root (default: Telegram's own); a local Bot API server or an emulator."""
    allowed_users: list[str | int] = Field(default_factory=list)
    open_to_all: bool = False
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str | None = None
    """The public HTTPS URL Telegram posts updates to (mode ``webhook``)."""
    webhook_host: str = "127.0.0.1"
    webhook_port: int = Field(default=8443, ge=0, le=65535)
    webhook_path: WebhookPath = "/telegram/webhook"
    webhook_secret: SecretStr | None = None
    """Sent as ``secret_token``; generated and kept under ``home_dir()/telegram/`` if unset."""
    max_webhook_bytes: int = Field(default=1024 * 1024, ge=1024)
    webhook_answer_timeout: float = Field(default=50.0, gt=0, le=300)
    """Seconds a webhook POST waits for its update to be handled (its event submitted)
    before it is answered 503 (Telegram sends it again); Telegram waits about a minute."""
    poll_timeout: int = Field(default=30, ge=1, le=50)
    files_dir: Path | None = None
    max_download_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    inline_image_bytes: int = Field(default=5 * 1024 * 1024, ge=0)
    """Pictures up to this size are also shown to the LLM inline (base64)."""
    max_retries: int = Field(default=5, ge=0)
    retry_base_delay: float = Field(default=1.0, ge=0)
    max_retry_after: float = Field(default=60.0, gt=0)
    request_timeout: float = Field(default=60.0, gt=0)
    typing_interval: float = Field(default=4.0, gt=0)

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _SECRET_SHAPE.match(value.get_secret_value()):
            raise ValueError("must be 1-256 characters A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("allowed_users")
    @classmethod
    def _users(cls, value: list[str | int]) -> list[str | int]:
        for user in value:
            if isinstance(user, str) and not re.fullmatch(r"@?\w{1,64}|-?\d+", user.strip()):
                raise ValueError(f"{user!r} is neither a numeric user id nor a @username")
        return value

    @property
    def downloads(self) -> Path:
        """Where received photos and documents are saved."""
        return (self.files_dir or home_dir() / "telegram" / "files").expanduser()

    def webhook_token(self) -> str:
        """``webhook_secret``, else the one kept in ``home_dir()/telegram/webhook_secret``
        (created on first use, mode 0600)."""
        if self.webhook_secret is not None:
            return self.webhook_secret.get_secret_value()
        path = home_dir() / "telegram" / "webhook_secret"
        try:
            kept = path.read_text().strip()
        except FileNotFoundError:
            kept = ""
        if _SECRET_SHAPE.match(kept):
            return kept
        token = secrets.token_urlsafe(32)  # letters, digits, '_' and '-': what Telegram takes
        write_private(path, token)
        return token


def parse_settings(table: dict[str, Any] | None, *, need_token: bool = True) -> TelegramSettings:
    """Validate ``[channels.telegram]`` (``TELEGRAM_BOT_TOKEN`` overrides ``token``), then
    :func:`checked`."""
    return checked(TelegramSettings.from_table(table), need_token=need_token)


def checked(settings: TelegramSettings, *, need_token: bool = True) -> TelegramSettings:
    """``settings`` once, with ``need_token``, its bot token is there and well formed, and
    a webhook's options are usable.

    Raises :class:`~openpista.ConfigError` naming the bad option (never the token).
    """
    if need_token:
        token = settings.secret("token").strip()
        if not token:
            raise ConfigError(
                f"[{SECTION}] token: missing; create a bot with @BotFather and put its token "
                f"here or in the {TOKEN_VARIABLE} environment variable"
            )
        if not _TOKEN_SHAPE.match(token):
            raise ConfigError(
                f"[{SECTION}] token: does not look like a bot token (expected "
                "<digits>:<letters>, as @BotFather gives it)"
            )
        settings.token = SecretStr(token)
    if settings.mode == "webhook":
        _check_webhook(settings)
    return settings


def _check_webhook(settings: TelegramSettings) -> None:
    url = settings.webhook_url or ""
    if not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(
            f'[{SECTION}] webhook_url: mode = "webhook" needs the public https:// URL '
            "Telegram posts updates to"
        )
    if not url.startswith("https://") and settings.api_base is None:
        raise ConfigError(
            f"[{SECTION}] webhook_url: Telegram posts only to https:// URLs (plain http works "
            "only with a local Bot API server set in api_base)"
        )
