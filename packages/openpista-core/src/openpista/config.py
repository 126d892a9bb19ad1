"""Configuration: ``~/.openpista/config.toml`` overlaid by ``OPENPISTA_*`` environment variables.

Every option is documented in ``config.example.toml`` at the repository root. Nested keys map
to environment variables with ``__`` between levels: ``[agent] max_tool_rounds`` is
``OPENPISTA_AGENT__MAX_TOOL_ROUNDS``. A few common ones have short forms
(``OPENPISTA_WORKSPACE``, ``OPENPISTA_DATABASE_URL``, ``OPENPISTA_PROVIDER``, ``OPENPISTA_MODEL``).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from openpista.envconfig import UnparsedValueError, deep_update, environment_tree
from openpista.home import DEFAULT_HOME as DEFAULT_HOME
from openpista.home import home_dir as home_dir
from openpista.home import in_home

OptionsT = TypeVar("OptionsT", bound=BaseModel)


def default_database_url() -> str:
    """The embedded SQLite file ``memory.db`` in the state directory."""
    return f"sqlite+aiosqlite:///{in_home('memory.db')}"


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
    client: Literal["auto", "litellm", "http"] = "auto"
    """What carries the requests: "http" openpista's own httpx client (OpenAI-compatible
    chat completions and Anthropic messages only), "litellm", or "auto" (http where it can,
    else litellm)."""


class AgentSettings(_Section):
    """``[agent]``: which provider answers and how the loop behaves."""

    provider: str = "openai"
    model: str | None = None
    max_tool_rounds: int = Field(default=10, ge=1)
    history_window: int = Field(default=200, ge=1)
    context_window: int | None = Field(default=None, ge=512)
    """Tokens a request may hold before older turns are summarised (context compaction);
    unset: the model's limit from litellm's model map, if it knows the model."""
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    workspace: Path = Field(default_factory=lambda: in_home("workspace"))


class DatabaseSettings(_Section):
    """``[database]``: where conversations are stored (any SQLAlchemy async URL)."""

    url: str = Field(default_factory=default_database_url)


class EmbeddingSettings(_Section):
    """``[memory.embeddings]``: semantic search (docs/memory.md), off unless a model is set."""

    model: str = "none"
    """The embedding model, through ``provider`` (litellm embeddings); "none": off."""
    provider: str | None = None
    """Whose key and URL to use (a provider preset); unset: ``[agent] provider``."""
    batch: int = Field(default=32, ge=1, le=2048)
    """Messages embedded per request."""
    min_similarity: float = Field(default=0.25, ge=-1, le=1)
    """Cosine similarity a message needs to be a vector hit of a search."""


class MemorySettings(_Section):
    """``[memory]``: conversation memory."""

    embeddings: EmbeddingSettings = Field(default_factory=EmbeddingSettings)


class SystemRunSettings(_Section):
    """``[tools.system_run]``: the shell tool."""

    enabled: bool = True
    timeout: float = Field(default=30.0, gt=0)
    max_output_chars: int = Field(default=10_000, ge=100)
    shell: str = "bash"


class ToolsSettings(BaseModel):
    """``[tools]``: built-in tool options; plugin tools keep their own ``[tools.<name>]``."""

    model_config = ConfigDict(extra="allow")

    env_passthrough: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default_factory=list
    )
    """Variables passed to tool and skill processes besides the safe ones (PATH, HOME, ...)."""
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
    pid_file: Path = Field(default_factory=lambda: in_home("openpista.pid"))
    restart_max_delay: float = Field(default=60.0, gt=0)


class ClusterSettings(_Section):
    """``[cluster]``: run as one gateway replica of several on one PostgreSQL database
    (docs/scale-out.md); off by default, refused on SQLite."""

    enabled: bool = False
    replica_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,40}$")
    """This replica's name in ``openpista status --cluster``; unset: ``host-pid``."""
    heartbeat: float = Field(default=2.0, gt=0, le=10)
    """Seconds between checks of the lease connection and attempts to lead (cron); at most
    10, so that a cut-off replica stops its turns before the server frees their sessions."""


class WorkersSettings(_Section):
    """``[workers]``: the worker report endpoint and history API of the daemon
    (docs/workers.md); off unless enabled, so a daemon opens no port it was not asked to."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    max_report_bytes: int = Field(default=1_000_000, ge=1024, le=64_000_000)
    api_token: SecretStr | None = None


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


class MetricsSettings(_Section):
    """``[metrics]``: the Prometheus ``/metrics`` endpoint of the daemon (docs/observability.md)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)
    token: SecretStr | None = None
    """Bearer token a scraper must send (``Authorization: Bearer ...``); none: no check."""
    mount: Literal["port", "web"] = "port"
    """``port``: served on ``host``:``port``; ``web``: at ``/metrics`` of the web channel's
    server instead (``token`` required unless that server listens on loopback only)."""


class LoggingSettings(_Section):
    """``[logging]``: how the daemon writes its log (``--log-format`` overrides)."""

    format: Literal["text", "json"] = "text"


class TracingSettings(_Section):
    """``[tracing]``: OpenTelemetry traces, off unless an OTLP/HTTP endpoint is set."""

    otlp_endpoint: str | None = None
    service_name: str = "openpista"


class ModelPrice(_Section):
    """A model's price in USD per million tokens, overriding litellm's price map."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)


class BudgetSettings(_Section):
    """``[budget]``: spending caps in USD (none by default) and per-model prices."""

    daily_usd: float | None = Field(default=None, gt=0)
    per_session_usd: float | None = Field(default=None, gt=0)
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    """Keyed by model (``gpt-4o-mini``) or ``provider/model``."""


class Settings(BaseModel):
    """The whole configuration. Build it with :func:`load_config` (the file and the
    environment) or :func:`settings_from`; ``Settings(...)`` reads no environment."""

    model_config = ConfigDict(extra="forbid")

    agent: AgentSettings = Field(default_factory=AgentSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    tools: ToolsSettings = Field(default_factory=ToolsSettings)
    skills: SkillsSettings = Field(default_factory=SkillsSettings)
    channels: dict[str, dict[str, Any]] = Field(default_factory=dict)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    workers: WorkersSettings = Field(default_factory=WorkersSettings)
    cron: list[CronEntry] = Field(default_factory=list)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    auth: dict[str, AuthProviderSettings] = Field(default_factory=dict)
    mcp: dict[str, Any] = Field(default_factory=dict)
    """``[mcp]``: validated by the openpista-mcp plugin (its ``McpSettings``)."""
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)

    source_path: Path | None = Field(default=None, exclude=True)

    def provider_settings(self, name: str) -> ProviderSettings:
        """Settings of provider ``name``, defaults when the config has no section for it."""
        return self.providers.get(name) or ProviderSettings()

    @property
    def workspace(self) -> Path:
        """The agent's workspace directory, ``~`` expanded."""
        return self.agent.workspace.expanduser()


# Sections whose keys, except the declared ones, are plugin tables of any shape.
_FREE_FORM_SECTIONS: dict[str, frozenset[str]] = {
    "channels": frozenset(),
    "tools": frozenset(ToolsSettings.model_fields),
    "skills": frozenset(SkillsSettings.model_fields),
}


def settings_from(data: Mapping[str, Any]) -> Settings:
    """:class:`Settings` from ``data`` (a parsed config file) overlaid by the ``OPENPISTA_*``
    variables; the short forms (``OPENPISTA_MODEL``) beat the long ones. Raises
    :class:`ConfigError` for an environment value that cannot be read and
    :class:`pydantic.ValidationError` for invalid options."""
    try:
        env = environment_tree(Settings, "OPENPISTA_", os.environ, skip={"source_path"})
    except UnparsedValueError as exc:
        raise ConfigError(_describe_unparsed(exc.field)) from None
    # Core's options have types pydantic converts text to; the tables of plugins
    # ([channels.<name>], [tools.<name>], [skills.<mode>]) are free-form until the plugin
    # validates them, so their values are decoded here.
    for section, declared in _FREE_FORM_SECTIONS.items():
        tables = env.get(section)
        if isinstance(tables, dict):
            env[section] = {
                key: value if key in declared else _decode_tree(value)
                for key, value in tables.items()
            }
    short: dict[str, Any] = {}
    for var, (section, key) in SHORT_ENV_NAMES.items():
        value = os.environ.get(var)
        if value:
            short.setdefault(section, {})[key] = value
    return Settings.model_validate(deep_update(dict(data), env, short))


def env_value(text: str) -> Any:
    """An environment variable's value for a plugin option, as the option's type wants it.

    ``true`` / ``false`` (any case) are booleans; a value starting with ``[`` or ``{`` is a
    list or table written as JSON or TOML (``["a", "b"]``, ``{device = "x"}``); everything
    else stays text, which the plugin's settings model converts (``"8765"`` to an integer
    option). A list or table that does not parse stays text, and validation names it.
    """
    stripped = text.strip()
    if stripped.lower() in ("true", "false"):
        return stripped.lower() == "true"
    if stripped[:1] in ("[", "{"):
        try:
            return json.loads(stripped)
        except ValueError:
            pass
        try:
            return tomllib.loads(f"value = {stripped}")["value"]
        except tomllib.TOMLDecodeError:
            pass
    return text


def _decode_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _decode_tree(item) for key, item in value.items()}
    return env_value(value) if isinstance(value, str) else value


def env_variable(path: tuple[str | int, ...]) -> str | None:
    """The set environment variable that gives the option at ``path`` (or a table above it),
    e.g. ``OPENPISTA_AGENT__MAX_TOOL_ROUNDS`` for ``("agent", "max_tool_rounds")``."""
    present = {name.upper(): name for name in os.environ}
    for end in range(len(path), 0, -1):
        parts = tuple(str(part) for part in path[:end])
        short = next((var for var, key in SHORT_ENV_NAMES.items() if key == parts), None)
        if short is not None and os.environ.get(short):
            return short
        name = "OPENPISTA_" + "__".join(parts).upper()
        if name in present:
            return present[name]
    return None


def default_config_path() -> Path:
    """``$OPENPISTA_CONFIG`` if set, else ``config.toml`` in the state directory
    (``$OPENPISTA_HOME``, default ``~/.openpista``)."""
    return Path(os.environ.get("OPENPISTA_CONFIG") or in_home("config.toml")).expanduser()


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
    try:
        settings = settings_from(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, config_path if data else None)) from None
    settings.source_path = config_path if data else None
    return settings


def plugin_options(
    section: str,
    table: object,
    model: type[OptionsT],
    *,
    env: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> OptionsT:
    """Validate a plugin's table (``section`` such as ``"tools.browser"``) into ``model``.

    ``None`` (no table) gives the defaults. ``env`` maps environment variables to options
    they override when set and not blank (``{"TELEGRAM_BOT_TOKEN": "token"}``), read from
    ``environ`` (default ``os.environ``). Anything wrong raises :class:`ConfigError` that
    names each bad option as ``[section] option: problem`` and the variable that set it, e.g.
    for ``plugin_options("channels.web", settings.channels.get("web"), WebSettings)``. Values
    are never shown: an option may be a secret.
    """
    if table is None:
        table = {}
    if not isinstance(table, dict):
        raise ConfigError(f"[{section}] must be a table of options, not {type(table).__name__}")
    source = os.environ if environ is None else environ
    overrides = {
        option: (variable, source[variable].strip())
        for variable, option in (env or {}).items()
        if source.get(variable, "").strip()
    }
    data = {**table, **{option: value for option, (_, value) in overrides.items()}}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False):
            loc = error["loc"]
            key = ".".join(str(part) for part in loc)
            variable = overrides[str(loc[0])][0] if loc and loc[0] in overrides else None
            variable = variable or env_variable((*section.split("."), *loc))
            origin = f" (from the environment variable {variable})" if variable else ""
            if error["type"] == "extra_forbidden":
                problems.append(f"{key}: unknown option; see config.example.toml{origin}")
            elif not loc:  # a check of the whole table
                problems.append(f"{error['msg'].removeprefix('Value error, ')}{origin}")
            else:
                problems.append(f"{key}: {error['msg']}{origin}")
        raise ConfigError(f"[{section}] " + "; ".join(problems)) from None


def _describe(exc: ValidationError, path: Path | None) -> str:
    """Each problem on its own line, named by the environment variable that set it if any."""
    lines = []
    from_file = False
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        got = error.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        variable = env_variable(error["loc"])
        from_file = from_file or variable is None
        origin = f"{variable} ({key})" if variable else key
        if error["type"] == "extra_forbidden":
            lines.append(f"  {origin}: unknown option; see config.example.toml for the valid ones")
        else:
            lines.append(f"  {origin}: {error['msg']}{shown}")
    where = str(path) if path and from_file else "the environment (OPENPISTA_* variables)"
    return "\n".join([f"{where}: invalid configuration", *lines])


def _describe_unparsed(field: str) -> str:
    """A list or table option (``field`` at the top) whose variable is not JSON, named."""
    variable = env_variable((field,))
    prefix = f"OPENPISTA_{field.upper()}__"
    if variable is None:  # the value was nested: OPENPISTA_<FIELD>__...
        variable = next((name for name in os.environ if name.upper().startswith(prefix)), None)
    name = variable or f"an {prefix}* variable"
    return (
        f"the environment (OPENPISTA_* variables): invalid configuration\n"
        f"  {name} ({field}): not a valid value; lists and tables are written as JSON, "
        f'e.g. ["a", "b"]'
    )
