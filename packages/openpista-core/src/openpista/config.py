"""Configuration: ``~/.openpista/config.toml`` overlaid by ``OPENPISTA_*`` environment variables.

Every option is documented in ``config.example.toml`` at the repository root. Nested keys map
to environment variables with ``__`` between levels: ``[agent] max_tool_rounds`` is
``OPENPISTA_AGENT__MAX_TOOL_ROUNDS``. A few common ones have short forms
(``OPENPISTA_WORKSPACE``, ``OPENPISTA_DATABASE_URL``, ``OPENPISTA_PROVIDER``, ``OPENPISTA_MODEL``).
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

OptionsT = TypeVar("OptionsT", bound=BaseModel)

DEFAULT_HOME = "~/.openpista"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///~/.openpista/memory.db"
DEFAULT_SYSTEM_PROMPT = (
    "You are openpista, an autonomous assistant running on the user's own computer. "
    "Use the tools you are given to act, then answer briefly and precisely."
)

SHORT_ENV_NAMES = {
    "OPENPISTA_WORKSPACE": ("agent", "workspace"),
    "OPENPISTA_PROVIDER": ("agent", "provider"),
    "OPENPISTA_MODEL": ("agent", "model"),
    "OPENPISTA_DATABASE_URL": ("database", "url"),
}


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file, the key and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProviderSettings(_Section):
    """``[providers.<name>]``: how to reach one LLM backend."""

    model: str | None = None
    api_key: SecretStr | None = None
    base_url: str | None = None
    timeout: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    retry_base_delay: float = Field(default=1.0, ge=0)
    # Provider-specific options (docs/providers.md): openai's wire API ("responses" is
    # POST {base_url}/responses), anthropic's auth header ("bearer": the api_key is sent as
    # `Authorization: Bearer` with the oauth beta), the ChatGPT account (`chatgpt-account-id`
    # header, else read from id_token's claims) and azure's api-version.
    api: Literal["chat", "responses"] = "chat"
    auth_header: Literal["x-api-key", "bearer"] = "x-api-key"
    account_id: str | None = None
    id_token: SecretStr | None = None
    api_version: str | None = None


class AgentSettings(_Section):
    """``[agent]``: which provider answers and how the loop behaves."""

    provider: str = "openai"
    model: str | None = None
    max_tool_rounds: int = Field(default=10, ge=1)
    history_window: int = Field(default=200, ge=1)
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    workspace: Path = Path(f"{DEFAULT_HOME}/workspace")


class DatabaseSettings(_Section):
    """``[database]``: where conversations are stored (any SQLAlchemy async URL)."""

    url: str = DEFAULT_DATABASE_URL


class SystemRunSettings(_Section):
    """``[tools.system_run]``: the shell tool."""

    enabled: bool = True
    timeout: float = Field(default=30.0, gt=0)
    max_output_chars: int = Field(default=10_000, ge=100)
    shell: str = "bash"


class ToolsSettings(BaseModel):
    """``[tools]``: built-in tool options; plugin tools keep their own ``[tools.<name>]``."""

    model_config = ConfigDict(extra="allow")

    system_run: SystemRunSettings = Field(default_factory=SystemRunSettings)


class SkillsSettings(BaseModel):
    """``[skills]``: skills found under the workspace; plugin runners keep their options in
    ``[skills.<mode>]`` (e.g. ``[skills.wasm]``)."""

    model_config = ConfigDict(extra="allow")

    enabled: bool = True
    timeout: float = Field(default=60.0, gt=0)


class GatewaySettings(_Section):
    """``[gateway]``: the daemon started by ``openpista start``."""

    queue_size: int = Field(default=1000, ge=1)
    max_concurrent_turns: int = Field(default=256, ge=1)
    shutdown_deadline: float = Field(default=30.0, ge=0)
    pid_file: Path = Path(f"{DEFAULT_HOME}/openpista.pid")
    restart_max_delay: float = Field(default=60.0, gt=0)


class CronEntry(_Section):
    """One ``[[cron]]`` entry: send ``message`` to the agent on ``schedule`` (a cron expression
    in local time: 5 fields, or 6 with seconds first), the answer delivered to ``channel``."""

    schedule: str
    channel: str
    message: str
    name: str | None = None
    enabled: bool = True


PolicyAction = Literal["allow", "ask", "deny"]


class PolicyRule(_Section):
    """One ``[[policy.rules]]`` entry; the first rule that matches a tool call decides.

    ``tool`` is a glob on the tool name (``system.run``, ``browser.*``); ``command`` a glob
    on the command of ``system.run`` calls; ``channels`` limits the rule to channel-id
    prefixes (empty: every channel).
    """

    tool: str = "*"
    command: str | None = None
    channels: list[str] = Field(default_factory=list)
    action: PolicyAction


class PolicySettings(_Section):
    """``[policy]``: which tool calls run, which need the user's approval, which never run.

    When no rule matches, ``local`` applies to local channels (``cli:``, ``tui:``, ``cron:``)
    and ``remote`` to every other channel.
    """

    local: PolicyAction = "allow"
    remote: PolicyAction = "ask"
    approval_timeout: float = Field(default=120.0, gt=0)
    rules: list[PolicyRule] = Field(default_factory=list)


class AuthProviderSettings(_Section):
    """``[auth.<provider>]``: override the sign-in table of ``openpista auth login``."""

    client_id: str | None = None
    authorize_url: str | None = None
    token_url: str | None = None
    scopes: list[str] | None = None
    callback_port: int | None = Field(default=None, ge=0, le=65535)
    exchange_url: str | None = None


class Settings(BaseSettings):
    """The whole configuration. Build it with :func:`load_config`."""

    model_config = SettingsConfigDict(
        env_prefix="OPENPISTA_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    agent: AgentSettings = Field(default_factory=AgentSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    tools: ToolsSettings = Field(default_factory=ToolsSettings)
    skills: SkillsSettings = Field(default_factory=SkillsSettings)
    channels: dict[str, dict[str, Any]] = Field(default_factory=dict)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    cron: list[CronEntry] = Field(default_factory=list)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    auth: dict[str, AuthProviderSettings] = Field(default_factory=dict)

    source_path: Path | None = Field(default=None, exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the file; keyword arguments beat both.
        return (
            init_settings,
            _ShortEnvSource(settings_cls),
            env_settings,
            _FileSource(settings_cls),
        )

    def provider_settings(self, name: str) -> ProviderSettings:
        """Settings of provider ``name``, defaults when the config has no section for it."""
        return self.providers.get(name) or ProviderSettings()

    @property
    def workspace(self) -> Path:
        """The agent's workspace directory, ``~`` expanded."""
        return self.agent.workspace.expanduser()


_file_data: ContextVar[dict[str, Any] | None] = ContextVar("openpista_config_file", default=None)


class _FileSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return (_file_data.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_file_data.get() or {})


class _ShortEnvSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for var, (section, key) in SHORT_ENV_NAMES.items():
            value = os.environ.get(var)
            if value:
                found.setdefault(section, {})[key] = value
        return found


def home_dir() -> Path:
    """Where openpista keeps its state: ``$OPENPISTA_HOME`` if set, else ``~/.openpista``.

    Plugins keep their files here too (certificates, caches, downloads), each in a
    sub-directory named after the plugin. The directory is not created.
    """
    return Path(os.environ.get("OPENPISTA_HOME") or DEFAULT_HOME).expanduser()


def default_config_path() -> Path:
    """``$OPENPISTA_CONFIG`` if set, else ``~/.openpista/config.toml``."""
    return Path(os.environ.get("OPENPISTA_CONFIG") or f"{DEFAULT_HOME}/config.toml").expanduser()


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning every failure into a :class:`ConfigError` naming it."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: the file is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None


def load_config(path: Path | str | None = None) -> Settings:
    """Read the config file (``path``, else :func:`default_config_path`) and the environment.

    A missing file at the default location means "all defaults"; a missing file that was
    named explicitly is an error. Invalid values raise :class:`ConfigError`.
    """
    explicit = path is not None or bool(os.environ.get("OPENPISTA_CONFIG"))
    config_path = Path(path).expanduser() if path is not None else default_config_path()
    data: dict[str, Any] = {}
    if config_path.exists():
        data = read_toml(config_path)
    elif explicit:
        raise ConfigError(
            f"{config_path}: config file not found "
            "(check the path, or copy config.example.toml there)"
        )
    token = _file_data.set(data)
    try:
        settings = Settings()
    except ValidationError as exc:
        raise ConfigError(_describe(exc, config_path if data else None)) from None
    finally:
        _file_data.reset(token)
    settings.source_path = config_path if data else None
    return settings


def plugin_options(section: str, table: object, model: type[OptionsT]) -> OptionsT:
    """Validate a plugin's table (``section`` such as ``"tools.browser"``) into ``model``.

    ``None`` (no table) gives the defaults. Anything wrong raises :class:`ConfigError` that
    names each bad option as ``[section] option: problem``, e.g. for
    ``plugin_options("channels.web", settings.channels.get("web"), WebSettings)``.
    """
    if table is None:
        table = {}
    if not isinstance(table, dict):
        raise ConfigError(f"[{section}] must be a table of options, not {type(table).__name__}")
    try:
        return model.model_validate(table)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "table"
            if error["type"] == "extra_forbidden":
                problems.append(f"{key}: unknown option; see config.example.toml")
            else:
                problems.append(f"{key}: {error['msg']}")
        raise ConfigError(f"[{section}] " + "; ".join(problems)) from None


def _describe(exc: ValidationError, path: Path | None) -> str:
    where = str(path) if path else "configuration (environment)"
    lines = [f"{where}: invalid configuration"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        got = error.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        if error["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown option; see config.example.toml for the valid ones")
        else:
            lines.append(f"  {key}: {error['msg']}{shown}")
    return "\n".join(lines)
