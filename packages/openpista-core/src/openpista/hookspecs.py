"""The plugin hooks of openpista: this module is the plugin author's manual.

A plugin is any module registered under the ``openpista`` entry-point group that defines
functions decorated with :data:`openpista.hookimpl` and named after the hooks below. Each
hook receives only the arguments it declares, so a plugin may leave out the ones it does
not need. Registration hooks get a ``register`` callback: call it once per thing you
provide. Built-in tools and providers are ordinary plugins written the same way
(``openpista.builtins``).

Hooks that run for one runtime may declare ``context``, the
:class:`~openpista.plugin_context.PluginContext` of that runtime: its ``config``, objects
shared by your hooks (``context.shared(factory)``), ``context.on_close(callback)`` to
release what you opened, and in the daemon hooks ``context.services``. Keep no state in
module globals: two runtimes may run in one process.

Keep the plugin module cheap to import: import the SDK you wrap inside the function that
needs it, never at module top level.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from openpista.channels import ChannelFactory, ChatCommand
    from openpista.config import Settings
    from openpista.doctor import DoctorCheck
    from openpista.plugin_context import PluginContext
    from openpista.plugin_settings import PluginSettings
    from openpista.providers.base import ProviderPreset
    from openpista.skills.base import SkillRunner
    from openpista.starter import StarterPrompt
    from openpista.tools.base import Tool

PROJECT_NAME = "openpista"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_providers(register: Callable[[ProviderPreset], None]) -> None:
    """Offer LLM provider presets.

    Call ``register(ProviderPreset(...))`` once per preset. The preset's ``name`` (and each
    of its ``aliases``) is what users write in ``[agent] provider = "..."``. Two plugins
    registering the same name is an error reported by ``openpista plugins``; the first one
    loaded wins.
    """


@hookspec
def register_settings(register: Callable[[type[PluginSettings]], None]) -> None:
    """Declare the settings model of each configuration table your plugin reads.

    Call ``register(PigeonSettings)`` for each :class:`~openpista.PluginSettings` subclass
    (its ``section`` names the table, its ``env`` the environment variables overriding
    options). Core validates each table once per runtime: read it with
    ``context.settings(PigeonSettings)`` in your hooks; a channel factory is handed it.
    ``openpista plugins`` lists what is wrong; a section two plugins register is reported
    against the later one.
    """


@hookspec
def register_tools(
    register: Callable[[Tool], None], config: Settings, context: PluginContext
) -> None:
    """Offer tools to the LLM.

    Call ``register(tool)`` for each :class:`openpista.tools.base.Tool`. Tool names are
    dotted (``system.run``, ``browser.click``); the registry rejects a name whose wire form
    (dots become underscores) collides with one already registered, and ``openpista
    plugins`` shows the collision. ``config`` is the whole configuration: read your options
    from ``config.tools.<name>`` and skip registering when your tool is disabled there.
    """


@hookspec
def register_channels(
    register: Callable[[str, ChannelFactory], None], config: Settings, context: PluginContext
) -> None:
    """Offer channel adapters to the gateway.

    Call ``register(name, factory)``; the gateway builds the adapter with
    ``factory(options, config)`` when ``[channels.<name>]`` has ``enabled = true``:
    ``options`` is your settings model of that table (``register_settings``), validated
    once by core, else the raw table. See :class:`openpista.channels.ChannelAdapter` for
    the contract.
    A name another plugin registered first is reported by ``openpista plugins`` and left out.
    """


@hookspec(firstresult=True)
def init_channel(name: str, prompt: StarterPrompt) -> dict[str, Any] | None:
    """Give the ``[channels.<name>]`` table that ``openpista init`` writes when the user
    enables channel ``name``; return None when ``name`` is not one of your channels.

    Generate what must be secret (tokens), ask for what only the user knows through
    ``prompt`` (``prompt.text``, ``prompt.confirm``, ``prompt.expose`` before listening
    beyond loopback; ``--yes`` takes every default, so defaults must be safe), and add the
    next step with ``prompt.note``. ``enabled = true`` is added for you. The table must pass
    your channel's own validation: ``openpista start`` right after ``init`` serves it.
    """


@hookspec
def register_skill_runners(
    register: Callable[[str, SkillRunner], None], config: Settings, context: PluginContext
) -> None:
    """Offer execution modes for skills.

    Call ``register(mode, runner)``; a skill whose front matter says ``mode: <mode>`` is run
    by that runner. Core registers ``subprocess``; a mode registered twice is reported by
    ``openpista plugins`` (the first one is kept). ``config`` is the whole configuration: a
    runner reads its options from ``[skills.<mode>]`` (``config.skills.model_extra``).
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``openpista`` command line.

    Decorate functions with ``@cli.command()``; import heavy dependencies inside them so
    that ``openpista --help`` stays fast.
    """


@hookspec
async def daemon_started(config: Settings, context: PluginContext) -> None:
    """Called once the daemon serves; ``context.services`` is the running daemon's
    :class:`~openpista.plugin_context.DaemonServices` (``submit`` an event, the served
    ``channels``)."""


@hookspec
async def daemon_stopping(config: Settings, context: PluginContext) -> None:
    """Called when the daemon begins shutting down, before channels are closed."""


@hookspec
async def runtime_closing(config: Settings, context: PluginContext) -> None:
    """Called when openpista closes (``openpista run``, the TUI, the daemon, after its
    channels stopped): release the processes and connections your plugin opened (a browser,
    a Docker client). Called once per run, whether or not your tools were used."""


@hookspec
def register_chat_commands(
    register: Callable[[ChatCommand], None], config: Settings, context: PluginContext
) -> None:
    """Add slash commands that users type in any chat (``/weather Paris``).

    Call ``register(ChatCommand(name="weather", summary="the forecast for CITY",
    usage="weather CITY", run=forecast))``: ``run`` is an async function taking a
    :class:`~openpista.channels.CommandCall` (``channel_id``, ``session_id``, ``name``,
    ``argument``) and returning a :class:`~openpista.channels.CommandReply`. Every channel
    answers the command the same way, outside the chat's turn order, and ``/help`` lists it.
    A name already taken (the gateway's own ``help``, ``model``, ``session``, ``clear``,
    ``usage``, ``approve``, ``deny``, or another plugin's) is logged with ❌ and left out; a
    ``run`` that raises answers one ❌ line.
    """


@hookspec
def doctor_checks(
    register: Callable[[DoctorCheck], None], config: Settings, context: PluginContext
) -> None:
    """Add online checks to ``openpista doctor`` (a channel's token, an API you call).

    Call ``register(DoctorCheck(name="channel pigeon token", run=probe))`` for what the
    configuration enables; ``probe`` is an async function returning a
    :class:`~openpista.doctor.Finding` (``ok``, one-line ``detail`` without secrets, the
    ``fix``). Register nothing for a disabled or invalid table: the doctor's channel check
    reports that. The doctor runs the checks concurrently, cuts each at its ``--timeout``,
    and reports :class:`~openpista.doctor.Unreachable` (raised by
    :func:`~openpista.doctor.request_json`) and a timeout with the check's
    ``unreachable_fix``. Import your SDK inside ``probe``, if at all.
    """
