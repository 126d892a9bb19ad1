"""Options of the MCP client: ``[mcp]`` and one ``[mcp.servers.NAME]`` table per server."""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from openpista.config import ConfigError, PolicyAction, PolicyRule, plugin_options
from openpista.policy import LOCAL_CHANNEL_PREFIXES

if TYPE_CHECKING:
    from openpista.config import PolicySettings, Settings

SERVING_ENV = "OPENPISTA_MCP_SERVING"
"""Set while ``openpista mcp serve`` runs and passed to the stdio servers it starts: a serve
started by a serve (``[mcp.servers]`` naming openpista itself) refuses to run, so the loop
ends there instead of forking without end."""
SERVER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"
"""Server names become part of tool names (``mcp.<server>.<tool>``): short, no dots."""


class ToolFilter(BaseModel):
    """``tools.allow`` / ``tools.deny``: globs on the server's own tool names."""

    model_config = ConfigDict(extra="forbid")

    allow: list[str] = Field(default_factory=lambda: ["*"])
    deny: list[str] = Field(default_factory=list)

    def admits(self, name: str) -> bool:
        """Whether tool ``name`` is offered: it matches an allow glob and no deny glob."""
        allowed = any(fnmatch.fnmatchcase(name, glob) for glob in self.allow)
        return allowed and not any(fnmatch.fnmatchcase(name, glob) for glob in self.deny)


class ServerPolicy(BaseModel):
    """``policy``: what the tool policy does with the server's tools when no
    ``[[policy.rules]]`` entry matches: ``"ask"`` for every chat, or per kind of chat
    ``{ local = "allow", remote = "ask" }`` (one left out follows ``[policy]``)."""

    model_config = ConfigDict(extra="forbid")

    local: PolicyAction | None = None
    remote: PolicyAction | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_action(cls, data: Any) -> Any:
        return {"local": data, "remote": data} if isinstance(data, str) else data

    def rules(self, server: str, defaults: PolicySettings) -> list[PolicyRule]:
        """The policy rules for ``mcp.<server>.*``: local chats first, then the others."""
        if self.local is None and self.remote is None:
            return []
        tools = f"mcp.{server}.*"
        local = PolicyRule(
            tool=tools, channels=list(LOCAL_CHANNEL_PREFIXES), action=self.local or defaults.local
        )
        return [local, PolicyRule(tool=tools, action=self.remote or defaults.remote)]


class ServerSettings(BaseModel):
    """One ``[mcp.servers.NAME]``: a program spoken to over stdio (``command``) or a remote
    endpoint (``url``: streamable HTTP, or legacy SSE with ``transport = "sse"``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    command: str | None = Field(default=None, min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    """Variables added to the safe environment the server starts with (PATH, HOME, ...)."""
    cwd: Path | None = None
    url: str | None = Field(default=None, pattern=r"^https?://")
    transport: Literal["stdio", "http", "sse"] | None = None
    """Inferred when left out: ``stdio`` with ``command``; with ``url``, ``sse`` when the
    path ends in ``/sse``, else ``http`` (streamable HTTP)."""
    headers: dict[str, str] = Field(default_factory=dict)
    bearer_token_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """The environment variable holding the token sent as ``Authorization: Bearer``."""
    oauth: bool = False
    """Sign in with OAuth (``openpista mcp login NAME``) instead of a fixed token."""
    oauth_scopes: list[str] = Field(default_factory=list)
    tools: ToolFilter = Field(default_factory=ToolFilter)
    timeout: float = Field(default=60.0, gt=0)
    """Seconds one call (a tool, a resource read) may take."""
    startup_timeout: float = Field(default=30.0, gt=0)
    """Seconds the server may take to start and list its tools."""
    max_output_chars: int = Field(default=10_000, ge=100)
    """What the LLM sees of one result at most; longer text is cut in the middle."""
    policy: ServerPolicy = Field(default_factory=ServerPolicy)

    @model_validator(mode="after")
    def _one_kind(self) -> ServerSettings:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either command (a stdio server) or url (a remote server)")
        if self.command is not None and self.transport not in (None, "stdio"):
            raise ValueError(f"transport {self.transport!r} needs url, not command")
        if self.url is not None and self.transport == "stdio":
            raise ValueError('transport "stdio" needs command, not url')
        if self.oauth and self.url is None:
            raise ValueError("oauth needs url: stdio servers sign in by their own means")
        if self.transport is None:
            self.transport = "stdio" if self.command else _remote_kind(self.url or "")
        return self

    def request_headers(self) -> dict[str, str]:
        """The HTTP headers of every request, the bearer token read from the environment now;
        raises :class:`ConfigError` when the variable is unset."""
        headers = dict(self.headers)
        if self.bearer_token_env:
            token = os.environ.get(self.bearer_token_env)
            if not token:
                raise ConfigError(f"the environment variable {self.bearer_token_env} is not set")
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def describe(self) -> str:
        """Where the server is, for listings: the command line or the URL."""
        if self.command is not None:
            return " ".join([self.command, *self.args])
        return f"{self.url} ({self.transport})"


def _remote_kind(url: str) -> Literal["http", "sse"]:
    path = url.split("?", 1)[0].rstrip("/")
    return "sse" if path.endswith("/sse") else "http"


class McpSettings(BaseModel):
    """``[mcp]``: the MCP servers whose tools the agent gets."""

    model_config = ConfigDict(extra="forbid")

    servers: dict[str, ServerSettings] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _check_names(cls, data: Any) -> Any:
        servers = data.get("servers") if isinstance(data, dict) else None
        if isinstance(servers, dict):
            bad = [name for name in servers if not _valid_name(name)]
            if bad:
                raise ValueError(
                    f"server name {bad[0]!r}: use letters, digits, '-' and '_' "
                    "(at most 32, starting with a letter or digit)"
                )
        return data

    @classmethod
    def from_config(cls, config: Settings) -> McpSettings:
        """Validate ``[mcp]``; anything wrong raises :class:`ConfigError` naming it."""
        return plugin_options("mcp", config.mcp, cls)

    def enabled(self) -> dict[str, ServerSettings]:
        """The servers to start, by name."""
        return {name: server for name, server in self.servers.items() if server.enabled}

    def policy_rules(self, defaults: PolicySettings) -> list[PolicyRule]:
        """The rules of every enabled server's ``policy`` (tried after the user's)."""
        return [
            rule
            for name, server in self.enabled().items()
            for rule in server.policy.rules(name, defaults)
        ]


def _valid_name(name: object) -> bool:
    return isinstance(name, str) and re.fullmatch(SERVER_NAME_PATTERN, name) is not None
