"""``openpista mcp import``: the ``mcpServers`` JSON of other MCP clients as config tables.

Accepted per server: ``command``, ``args``, ``env``, ``cwd`` (stdio); ``url`` (or
``serverUrl``), ``headers`` and ``type``/``transport`` (``sse``, ``http``,
``streamable-http``) for remote ones; ``disabled: true``. Other keys (``autoApprove``, ...)
are other clients' own and are left out.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from openpista.config import ConfigError
from openpista_mcp.settings import McpSettings

MAX_FILE_BYTES = 1_000_000
_TRANSPORTS = {
    "stdio": "stdio",
    "sse": "sse",
    "http": "http",
    "streamable-http": "http",
    "streamable_http": "http",
    "streamablehttp": "http",
}


def read_mcp_servers(path: Path) -> dict[str, dict[str, Any]]:
    """The servers of an ``mcpServers`` (or VS Code ``servers``) file as ``[mcp.servers]``
    tables; raises ConfigError naming what is wrong."""
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES:,} bytes; not an MCP server list")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not JSON ({exc})") from None
    servers = None
    if isinstance(document, dict):
        servers = document.get("mcpServers", document.get("servers"))
    if not isinstance(servers, dict) or not servers:
        raise ConfigError(f'{path}: no "mcpServers" object naming at least one server')
    tables = {str(name): _table(str(name), entry) for name, entry in servers.items()}
    _validate(tables, f"{path}")
    return tables


def _table(name: str, entry: object) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ConfigError(f"server {name!r}: must be an object, not {type(entry).__name__}")
    table: dict[str, Any] = {}
    for key in ("command", "args", "env", "cwd", "headers"):
        if key in entry:
            table[key] = entry[key]
    url = entry.get("url", entry.get("serverUrl"))
    if url is not None:
        table["url"] = url
    kind = entry.get("type", entry.get("transport"))
    if kind is not None:
        transport = _TRANSPORTS.get(str(kind).lower())
        if transport is None:
            raise ConfigError(f"server {name!r}: unknown transport type {kind!r}")
        table["transport"] = transport
    if entry.get("disabled") is True:
        table["enabled"] = False
    return table


def _validate(tables: dict[str, dict[str, Any]], origin: str) -> None:
    try:
        McpSettings.model_validate({"servers": tables})
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc'][1:]) or 'servers'}: {error['msg']}"
            for error in exc.errors()
        ]
        raise ConfigError(f"{origin}: " + "; ".join(problems)) from None


def append_servers(
    config_path: Path, servers: dict[str, dict[str, Any]], existing: set[str]
) -> list[str]:
    """Append ``servers`` to the config file as ``[mcp.servers.NAME]`` tables (the rest of
    the file, comments included, is kept); names already configured raise ConfigError."""
    import tomli_w

    taken = sorted(set(servers) & existing)
    if taken:
        raise ConfigError(
            f"already in [mcp.servers]: {', '.join(taken)}; remove them from the file first"
        )
    old = config_path.read_text(encoding="utf-8") if config_path.exists() else ""
    added = tomli_w.dumps({"mcp": {"servers": servers}})
    # tomli_w writes the empty parent tables first; the file may define them already.
    added = "\n".join(
        line for line in added.splitlines() if line.strip() not in ("[mcp]", "[mcp.servers]")
    )
    text = f"{old.rstrip()}\n\n{added.strip()}\n" if old.strip() else f"{added.strip()}\n"
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{config_path}: the servers cannot be added to this file ({exc})"
        ) from None
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(text, encoding="utf-8")
    return list(servers)
