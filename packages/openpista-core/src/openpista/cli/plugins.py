"""``openpista plugins``: what was discovered and what each plugin registered, and the
directory plugins (``install``, ``remove``, ``enable``, ``disable``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from openpista._version import __version__
from openpista.cli.main import CliState

if TYPE_CHECKING:
    from openpista.plugin_dir import DirectoryPlugin, PluginManifest


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List plugins, their versions and what each registered.

    Built-in plugins are part of openpista-core; the others come from installed
    distributions that declare an `openpista` entry point. OPENPISTA_LOAD_PLUGINS
    (comma-separated names, empty for none) chooses which installed plugins load.
    Plugins that failed, names registered twice and invalid plugin tables
    ([channels.<name>], [tools.<name>], [skills.<mode>]) are listed with the reason.

    Directory plugins (sandboxed WebAssembly tools in ~/.openpista/plugins, see
    docs/plugins.md) are listed after them, with their state and permissions; `install`,
    `remove`, `enable` and `disable` manage them (a running daemon picks changes up).
    """
    if ctx.invoked_subcommand is None:
        _list(ctx.obj, as_json)


def _list(state: CliState, as_json: bool) -> None:
    from openpista.plugin_context import PluginContext
    from openpista.plugin_dir import discover
    from openpista.plugins import PluginHost
    from openpista.runtime import build_providers, build_toolbox, channel_factories, check_settings

    settings = state.settings()
    context = PluginContext(settings)
    host = PluginHost.load()
    check_settings(host, settings)
    build_toolbox(host, settings, context)
    build_providers(host)
    channel_factories(host, context)
    asyncio.run(context.close())
    reports = sorted(host.reports.values(), key=lambda r: (not r.builtin, r.name))
    directory = discover()
    if as_json:
        listed = [r.as_dict() for r in reports] + [_as_dict(p) for p in directory]
        click.echo(json.dumps(listed, indent=2))
        return
    for report in reports:
        if report.builtin:
            origin = f"built in, openpista-core {__version__}"
        else:
            origin = f"{report.distribution or '?'} {report.version or '?'}"
        click.echo(f"{report.name}  ({origin}; {report.module})")
        for kind, names in report.registered.items():
            if names:
                click.echo(f"  {kind}: {', '.join(names)}")
        for error in report.errors:
            click.echo(click.style(f"  ❌ {error}", fg="red"))
    for plugin in directory:
        _show(plugin)


def _as_dict(plugin: DirectoryPlugin) -> dict[str, object]:
    manifest = plugin.manifest
    return {
        "name": plugin.name,
        "kind": "directory",
        "path": str(plugin.folder),
        "enabled": plugin.enabled,
        "version": manifest.version if manifest else None,
        "tools": [manifest.tool_name(t) for t in manifest.tools] if manifest else [],
        "permissions": manifest.permissions.model_dump() if manifest else None,
        "errors": [plugin.error] if plugin.error else [],
    }


def _show(plugin: DirectoryPlugin) -> None:
    manifest = plugin.manifest
    state = "enabled" if plugin.enabled else "disabled"
    if manifest is None:
        click.echo(f"{plugin.name}  (directory plugin, {state}; {plugin.folder})")
        click.echo(click.style(f"  ❌ {plugin.error}", fg="red"))
        return
    click.echo(f"{plugin.name} {manifest.version}  (directory plugin, {state}; {plugin.folder})")
    click.echo(f"  tools: {', '.join(manifest.tool_name(t) for t in manifest.tools)}")
    for line in _permission_lines(manifest):
        click.echo(f"  {line}")


def _permission_lines(manifest: PluginManifest) -> list[str]:
    grants = manifest.permissions
    return [
        f"reads: {', '.join(grants.read) or 'nothing'} (of the workspace)",
        f"writes: {', '.join(grants.write) or 'nothing'}",
        f"environment: {', '.join(grants.env) or 'none'}",
        f"limits: {grants.timeout:g} s, {grants.memory_mb} MB per call; network: none",
    ]


@plugins.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--yes", is_flag=True, help="Accept its permissions without asking (scripts).")
@click.option("--replace", is_flag=True, help="Replace an installed plugin of that name.")
def install(source: Path, yes: bool, replace: bool) -> None:
    """Install the directory plugin in SOURCE (a folder, .tar.gz or .zip).

    Its plugin.toml and the SHA-256 of its module are checked first; its permissions are
    shown and must be accepted. Python plugins are installed with pip instead (`pip
    install openpista-NAME`, then restart the daemon).
    """
    from openpista.plugin_dir import PluginDirError
    from openpista.plugin_dir import install as install_plugin

    def accept(manifest: PluginManifest) -> bool:
        click.echo(f"{manifest.name} {manifest.version}: {manifest.description or '-'}")
        for line in _permission_lines(manifest):
            click.echo(f"  {line}")
        return yes or click.confirm("Install it with these permissions?", default=False)

    try:
        installed = install_plugin(source, replace=replace, accept=accept)
    except PluginDirError as exc:
        raise click.ClickException(str(exc)) from None
    assert installed.manifest is not None
    tools = ", ".join(installed.manifest.tool_name(t) for t in installed.manifest.tools)
    click.echo(f"✓ installed {installed.name} {installed.manifest.version}: {tools}")
    click.echo("A running daemon offers its tools from its next turn on.")


@plugins.command()
@click.argument("name")
def remove(name: str) -> None:
    """Remove the directory plugin NAME (a running daemon drops its tools)."""
    from openpista.plugin_dir import PluginDirError
    from openpista.plugin_dir import remove as remove_plugin

    try:
        remove_plugin(name)
    except PluginDirError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"✓ removed {name}")


@plugins.command()
@click.argument("name")
def enable(name: str) -> None:
    """Enable the directory plugin NAME."""
    _set_enabled(name, True)


@plugins.command()
@click.argument("name")
def disable(name: str) -> None:
    """Disable the directory plugin NAME (it stays installed, its tools are not offered)."""
    _set_enabled(name, False)


def _set_enabled(name: str, enabled: bool) -> None:
    from openpista.plugin_dir import PluginDirError, set_enabled

    try:
        set_enabled(name, enabled)
    except PluginDirError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"✓ {name} {'enabled' if enabled else 'disabled'}")
