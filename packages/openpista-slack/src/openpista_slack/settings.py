"""The ``[channels.slack]`` options, validated (every option is in config.example.toml)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator

from openpista import ConfigError, PluginSettings, WebhookPath, home_dir

SECTION = "channels.slack"
BOT_TOKEN_VARIABLE = "SLACK_BOT_TOKEN"  # noqa: S105  an environment variable's name
APP_TOKEN_VARIABLE = "SLACK_APP_TOKEN"  # noqa: S105  an environment variable's name
SIGNING_SECRET_VARIABLE = "SLACK_SIGNING_SECRET"  # noqa: S105  an environment variable's name
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")
_TEAM_ID = re.compile(r"^[TE][A-Z0-9]{2,20}$")


class SlackSettings(PluginSettings):
    """The Slack channel's configuration; ``SLACK_BOT_TOKEN``, ``SLACK_APP_TOKEN`` and
    ``SLACK_SIGNING_SECRET`` override their options."""

    section: ClassVar[str] = SECTION
    env: ClassVar[Mapping[str, str]] = {
        BOT_TOKEN_VARIABLE: "bot_token",
        APP_TOKEN_VARIABLE: "app_token",
        SIGNING_SECRET_VARIABLE: "signing_secret",
    }

    enabled: bool = False
    mode: Literal["socket", "http"] = "socket"
    bot_token: SecretStr | None = None
    """The bot user OAuth token (``xoxb-...``)."""
    app_token: SecretStr | None = None
    """The app-level token with ``connections:write`` (``xapp-...``; Socket Mode)."""
    signing_secret: SecretStr | None = None
    """The app's signing secret (HTTP mode: every request's signature is checked with it)."""
    api_base: str | None = None
    """Web API root (default Slack's own ``https://slack.com/api/``); an emulator in tests."""
    allowed_users: list[str] = Field(default_factory=list)
    """Slack user ids (``U0123ABCD``) who may talk to the agent."""
    allowed_teams: list[str] = Field(default_factory=list)
    """Workspace ids (``T0123ABCD``) whose every member may talk to the agent."""
    open_to_all: bool = False
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=3000, ge=0, le=65535)
    http_path: WebhookPath = "/slack/events"
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    event_answer_timeout: float = Field(default=2.5, gt=0, le=30)
    """Seconds an event waits to be submitted before it is answered 500 (Socket Mode: not
    acked) and Slack sends it again; Slack wants an answer within 3 s."""
    signature_window: int = Field(default=300, ge=1, le=3600)
    """Seconds a signed request's timestamp may be off (Slack: 5 minutes, against replay)."""
    stream_interval: float = Field(default=1.0, ge=0)
    """Least seconds between two ``chat.update`` calls of one streamed answer."""
    max_retries: int = Field(default=3, ge=0)
    retry_base_delay: float = Field(default=1.0, ge=0)
    max_retry_after: float = Field(default=60.0, gt=0)
    request_timeout: int = Field(default=30, gt=0)
    ping_interval: float = Field(default=10.0, gt=0)
    """Socket Mode: seconds between WebSocket pings (a silent socket is reconnected)."""
    thinking_text: str = Field(default="⏳ _thinking…_", min_length=1, max_length=200)
    """Posted at once for each message and replaced by the answer as it is written."""
    files_dir: Path | None = None
    max_download_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    inline_image_bytes: int = Field(default=5 * 1024 * 1024, ge=0)
    """Shared pictures up to this size are also shown to the LLM inline (base64)."""
    max_files: int = Field(default=10, ge=0)
    """Files taken from one message (more: the message is refused with a ❌ line)."""

    @field_validator("api_base")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http(s) URL such as http://127.0.0.1:8080/api/")
        return value.rstrip("/") + "/" if value else None

    @field_validator("allowed_users")
    @classmethod
    def _users(cls, value: list[str]) -> list[str]:
        for user in value:
            if not _USER_ID.match(user.strip()):
                raise ValueError(f"{user!r} is not a Slack user id (U0123ABCD)")
        return [user.strip() for user in value]

    @field_validator("allowed_teams")
    @classmethod
    def _teams(cls, value: list[str]) -> list[str]:
        for team in value:
            if not _TEAM_ID.match(team.strip()):
                raise ValueError(f"{team!r} is not a Slack workspace id (T0123ABCD)")
        return [team.strip() for team in value]

    @property
    def downloads(self) -> Path:
        """Where shared files are saved."""
        return (self.files_dir or home_dir() / "slack" / "files").expanduser()

    def secrets(self) -> list[str]:
        """Every secret set, to keep out of logs."""
        return [s for s in map(self.secret, ("bot_token", "app_token", "signing_secret")) if s]


def parse_settings(table: dict[str, Any] | None, *, need_tokens: bool = True) -> SlackSettings:
    """Validate ``[channels.slack]`` and, with ``need_tokens``, :func:`checked`."""
    settings = SlackSettings.from_table(table)
    return checked(settings) if need_tokens else settings


def checked(settings: SlackSettings) -> SlackSettings:
    """``settings`` once the mode's tokens are there and well formed. Raises
    :class:`~openpista.ConfigError` naming the option (never a value)."""
    _require(settings, "bot_token", BOT_TOKEN_VARIABLE, "xoxb-", "Bot User OAuth Token")
    if settings.mode == "socket":
        _require(settings, "app_token", APP_TOKEN_VARIABLE, "xapp-", "App-Level Token")
    elif not settings.secret("signing_secret").strip():
        raise ConfigError(
            f'[{SECTION}] signing_secret: mode = "http" needs the app\'s Signing Secret (Basic '
            f"Information page), here or in {SIGNING_SECRET_VARIABLE}"
        )
    return settings


def _require(settings: SlackSettings, option: str, variable: str, prefix: str, label: str) -> None:
    value = settings.secret(option)
    if not value.strip():
        raise ConfigError(
            f"[{SECTION}] {option}: missing; put the app's {label} ({prefix}...) here or in "
            f"the {variable} environment variable"
        )
    if not value.startswith(prefix) or any(c.isspace() for c in value):
        raise ConfigError(f"[{SECTION}] {option}: does not look like a {label} ({prefix}...)")
