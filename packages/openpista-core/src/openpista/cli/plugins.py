"""``openpista plugins``: what was discovered and what each plugin registered, and the
directory plugins (``install``, ``remove``, ``enable``, ``disable``)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import tempfile
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
    check_settings(host, settings, context)
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
            distribution, version = report.distribution
            origin = f"{distribution or '?'} {version or '?'}"
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


_DISTRIBUTION = re.compile(r"^openpista-[a-z0-9][a-z0-9._-]*([<>=!~]=?[\w.*]+)?$", re.I)


@plugins.command()
@click.argument("source")
@click.option("--yes", is_flag=True, help="Accept without asking (scripts).")
@click.option("--replace", is_flag=True, help="Replace an installed plugin of that name.")
def install(source: str, yes: bool, replace: bool) -> None:
    """Install the plugin SOURCE: a directory plugin (a folder, or a .tar.gz or .zip file
    or URL) or a Python plugin distribution (`openpista-NAME`, or a wheel file).

    A directory plugin's plugin.toml and the SHA-256 of its module are checked first;
    its permissions are shown and must be accepted. A distribution is installed with pip
    into the environment openpista runs in (pip's own settings apply: PIP_INDEX_URL,
    PIP_FIND_LINKS, ...); the plugins it adds load after a restart of the daemon.
    """
    if source.startswith(("https://", "http://")):
        with tempfile.TemporaryDirectory(prefix="openpista-download-") as scratch:
            _install_directory(_download(source, Path(scratch)), yes, replace)
        return
    path = Path(source)
    if path.suffix == ".whl" or (not path.exists() and _DISTRIBUTION.match(source)):
        _pip_install(source, yes)
        return
    if not path.exists():
        raise click.ClickException(
            f"{source} is neither a plugin folder or archive nor an openpista-NAME distribution"
        )
    _install_directory(path, yes, replace)


def _download(url: str, scratch: Path) -> Path:
    """The plugin archive at ``url`` (``.tar.gz``, ``.tgz`` or ``.zip``), fetched into
    ``scratch`` no larger than an archive may be."""
    from urllib.parse import urlsplit

    import httpx

    from openpista.plugin_dir import MAX_ARCHIVE_BYTES

    name = Path(urlsplit(url).path).name
    if not name.lower().endswith((".tar.gz", ".tgz", ".zip")):
        raise click.ClickException(f"{url}: give the URL of a .tar.gz or .zip plugin archive")
    target = scratch / name
    click.echo(f"Downloading {url} ...")
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=30) as response:
            response.raise_for_status()
            size = 0
            with target.open("wb") as sink:
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_ARCHIVE_BYTES:
                        raise click.ClickException(
                            f"{url} is larger than {MAX_ARCHIVE_BYTES} bytes"
                        )
                    sink.write(chunk)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot download {url}: {exc}") from None
    return target


def _pip_install(spec: str, yes: bool) -> None:
    before = _entry_points()
    if not yes and not click.confirm(f"Install {spec} with pip into {sys.prefix}?"):
        raise click.ClickException("not installed")
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", spec]
    done = subprocess.run(command, check=False)  # noqa: S603  fixed argv: this Python's pip; its progress shows
    if done.returncode != 0:
        raise click.ClickException(f"pip could not install {spec} (exit code {done.returncode})")
    added = sorted(set(_entry_points()) - set(before))
    if not added:
        click.echo(f"✓ pip installed {spec}; it adds no new openpista plugin")
        return
    click.echo(f"✓ new plugins: {', '.join(added)}")
    click.echo("Restart the daemon to load them (openpista stop, then openpista start).")


def _entry_points() -> list[str]:
    """The names of the ``openpista`` entry points installed now (read afresh)."""
    from openpista.entry_points import entry_points

    return [point.name for point in entry_points("openpista")]


def _install_directory(source: Path, yes: bool, replace: bool) -> None:
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
    assert installed.manifest is not None  # noqa: S101  an invariant for mypy, not a check
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
