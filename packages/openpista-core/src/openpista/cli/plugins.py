"""``openpista plugins``: what was discovered and what each plugin registered."""

from __future__ import annotations

import asyncio
import json

import click

from openpista._version import __version__
from openpista.cli.main import CliState


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_obj
def plugins(state: CliState, as_json: bool) -> None:
    """List plugins, their versions and what each registered.

    Built-in plugins are part of openpista-core; the others come from installed
    distributions that declare an `openpista` entry point. OPENPISTA_LOAD_PLUGINS
    (comma-separated names, empty for none) chooses which installed plugins load.
    Plugins that failed, names registered twice and invalid plugin tables
    ([channels.<name>], [tools.<name>], [skills.<mode>]) are listed with the reason.
    """
    from openpista.plugin_context import PluginContext
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
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in reports], indent=2))
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
