"""The ``[channels.discord]`` options, validated (every option is in config.example.toml)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, SecretStr, field_validator

from openpista import ConfigError, HttpRoot, PluginSettings, home_dir

SECTION = "channels.discord"
TOKEN_VARIABLE = "DISCORD_BOT_TOKEN"  # noqa: S105  an environment variable's name
DISCORD_API = "https://discord.com"
"""Where discord.py talks to by default (its REST root is ``{api_base}/api/v10``)."""
# A bot token: three dot-separated base64url parts (user id, timestamp, HMAC).
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{10,}$")
_SNOWFLAKE = re.compile(r"^\d{1,20}$")


class DiscordSettings(PluginSettings):
    """The Discord channel's configuration; ``DISCORD_BOT_TOKEN`` overrides ``token``."""

    section: ClassVar[str] = SECTION
    env: ClassVar[Mapping[str, str]] = {TOKEN_VARIABLE: "token"}

    enabled: bool = False
    token: SecretStr | None = None
    api_base: HttpRoot | None = None
    """Discord's HTTP root (default ``https://discord.com``); REST goes to
    ``{api_base}/api/v10``, the gateway to the URL ``GET /gateway/bot`` names."""
    allowed_users: list[int | str] = Field(default_factory=list)
    """Discord user ids (numbers) that may talk to the bot."""
    allowed_roles: list[int | str] = Field(default_factory=list)
    """Guild role ids whose members may talk to the bot (in that guild)."""
    open_to_all: bool = False
    message_content: bool = True
    """Ask for the privileged Message Content intent (needed to read guild messages that
    do not mention the bot; enable it in the Developer Portal too)."""
    thread_per_conversation: bool = False
    """A mention in a guild channel opens a thread: the conversation goes on there."""
    command_guilds: list[int | str] = Field(default_factory=list)
    """Register the slash commands in these guilds only (instant); empty: globally."""
    edit_interval: float = Field(default=1.5, gt=0)
    """Seconds between two edits of a streamed answer (Discord allows ~5 edits per 5 s)."""
    typing_interval: float = Field(default=8.0, gt=0)
    max_retry_after: float = Field(default=60.0, ge=30)
    """A 429 asking to wait longer than this fails that request instead of waiting
    (discord.py's ``max_ratelimit_timeout``; it takes no less than 30 s)."""
    catch_up_hours: float = Field(default=24.0, ge=0)
    """In a cluster, the replica that takes the gateway over fetches the messages written
    while no replica held it, in the chats with a message delivered this many hours back
    (0: none)."""
    catch_up_limit: int = Field(default=100, ge=1, le=1000)
    """The most messages fetched per chat that way; a longer backlog is cut (one log line)."""
    catch_up_wait: float = Field(default=10.0, gt=0, le=300)
    """Seconds a live message of a chat being caught up waits for that chat's missed
    messages to be handed on first; past it (REST is slow) it goes ahead (one log line)."""
    files_dir: Path | None = None
    max_download_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    inline_image_bytes: int = Field(default=5 * 1024 * 1024, ge=0)
    """Pictures up to this size are also shown to the LLM inline (base64)."""
    max_upload_bytes: int = Field(default=8 * 1024 * 1024, gt=0)

    @field_validator("allowed_users", "allowed_roles", "command_guilds")
    @classmethod
    def _ids(cls, value: list[int | str]) -> list[int | str]:
        for item in value:
            if not _SNOWFLAKE.match(str(item).strip()):
                raise ValueError(f"{item!r} is not a numeric Discord id (Developer Mode: Copy ID)")
        return value

    @property
    def rest_base(self) -> str:
        """The REST root discord.py is pointed at (``{api_base}/api/v10``)."""
        return f"{self.api_base or DISCORD_API}/api/v10"

    @property
    def downloads(self) -> Path:
        """Where received attachments are saved."""
        return (self.files_dir or home_dir() / "discord" / "files").expanduser()


def parse_settings(table: dict[str, Any] | None, *, need_token: bool = True) -> DiscordSettings:
    """Validate ``[channels.discord]`` (``DISCORD_BOT_TOKEN`` overrides ``token``), then,
    with ``need_token``, :func:`checked`."""
    settings = DiscordSettings.from_table(table)
    return checked(settings) if need_token else settings


def checked(settings: DiscordSettings) -> DiscordSettings:
    """``settings`` once its bot token is there and well formed.

    Raises :class:`~openpista.ConfigError` naming the bad option (never the token).
    """
    token = settings.secret("token").strip()
    if not token:
        raise ConfigError(
            f"[{SECTION}] token: missing; copy it from the Developer Portal (Bot -> Reset "
            f"Token) into this option or the {TOKEN_VARIABLE} environment variable"
        )
    if not _TOKEN_SHAPE.match(token):
        raise ConfigError(
            f"[{SECTION}] token: does not look like a bot token (three dot-separated "
            "parts, as the Developer Portal shows it)"
        )
    settings.token = SecretStr(token)
    return settings
