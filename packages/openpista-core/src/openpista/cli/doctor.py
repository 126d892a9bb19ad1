"""``openpista doctor``: check the installation, one ✓/✗ line per check with the fix.

The checks run in order: configuration, plugins, the provider (a one-word round trip),
every enabled channel, the checks plugins add (``doctor_checks``: a channel's token,
the desktop's X display), the system programs that loaded tool plugins need, the memory
database and its migrations, and the permissions of the state files. Heavy modules
(litellm, SQLAlchemy) are imported only by the check that needs them.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import shutil
import socket
import stat
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from openpista.cli.main import CliState

if TYPE_CHECKING:
    from openpista.config import Settings
    from openpista.doctor import DoctorCheck
    from openpista.plugin_context import PluginContext
    from openpista.plugins import PluginHost

PROVIDER_PROMPT = "Reply with exactly one word: pong"
PROVIDER_TIMEOUT = 60.0
ONLINE_TIMEOUT = 10.0
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DOCKER_SOCKET = "/var/run/docker.sock"
LISTENER_PREFIXES = ("", "webhook_", "http_")
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
MAX_LINE = 500
SECRET_OPTION = re.compile(r"^\s*\w*(key|token|secret|password)\w*\s*=", re.MULTILINE)


@dataclass(frozen=True)
class Check:
    """One line of the report: ``ok`` is None for a check that does not apply here."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = {True: "✓", False: "✗", None: "-"}[self.ok]
        text = f"{mark} {self.name}: {self.detail}"
        return f"{text}\n    fix: {self.fix}" if self.fix and self.ok is False else text


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=ONLINE_TIMEOUT,
    show_default=True,
    help="Seconds each online check (a channel's token) may take.",
)
@click.pass_obj
def doctor(state: CliState, as_json: bool, timeout: float) -> None:
    """Check the configuration, the provider (one short round trip), every enabled
    channel and its token (online), Docker, Chromium, an X display, tesseract (when a loaded
    plugin needs them), the database and its migrations, and the permissions of
    ~/.openpista.

    Prints one line per check (✓ fine, ✗ broken with the fix, - does not apply) and
    exits 1 when any check failed.
    """
    checks: list[Check] = []
    for check in run_checks(state.config_path, timeout):
        checks.append(check)
        if not as_json:  # as they come: the provider's round trip may take seconds
            click.echo(check.line())
    if as_json:
        click.echo(json.dumps([asdict(c) for c in checks], indent=2, ensure_ascii=False))
    failed = sum(c.ok is False for c in checks)
    if not as_json:
        click.echo(f"{failed} problem(s) found." if failed else "Everything looks fine.")
    sys.exit(1 if failed else 0)


def run_checks(config_path: str | None, timeout: float = ONLINE_TIMEOUT) -> Iterator[Check]:
    """Every check, in order; the configuration first (nothing else runs when it fails).
    ``timeout`` bounds each online check that plugins add."""
    from openpista.config import ConfigError, default_config_path, load_config

    path = Path(config_path).expanduser() if config_path else default_config_path()
    try:
        settings = load_config(config_path)
    except ConfigError as exc:
        yield Check("config", False, str(exc), f"correct {path} (config.example.toml lists it)")
        return
    where = str(path) if path.exists() else f"{path} absent, defaults and environment"
    yield Check("config", True, f"valid ({where})")

    from openpista.plugin_context import PluginContext
    from openpista.plugins import PluginHost
    from openpista.runtime import check_settings

    host = PluginHost.load()
    context = PluginContext(settings)
    check_settings(host, settings, context)
    try:
        yield check_provider(host, settings)
        yield from check_channels(host, context, settings)
        checks = [c for _, c in host.collect("doctor_checks", lambda c: c.name, context)]
        yield from asyncio.run(run_online(checks, timeout))
        yield from check_plugins(host)
        yield from check_programs(host, settings)
    finally:
        asyncio.run(context.close())
    yield check_database(settings.database.url)
    yield check_semantic_search(host, settings)
    yield from check_permissions(path)


def check_plugins(host: PluginHost) -> Iterator[Check]:
    """One line for the plugins that loaded, one per problem a plugin reported."""
    loaded = sorted(name for name, report in host.reports.items() if report.loaded)
    yield Check("plugins", True, f"{len(loaded)} loaded: {', '.join(loaded)}")
    for report in host.reports.values():
        for error in report.errors:
            fix = "correct its table in the config, or uninstall or update the plugin"
            yield Check(f"plugin {report.name}", False, error, fix)


def check_provider(host: PluginHost, settings: Settings) -> Check:
    """Build the ``[agent]`` provider and send it a one-word prompt."""
    from openpista.config import ConfigError
    from openpista.providers.base import ProviderError
    from openpista.runtime import build_providers

    name = f"provider {settings.agent.provider}"
    try:
        llm = build_providers(host).build(settings)
    except (ProviderError, ConfigError) as exc:
        return Check(name, False, str(exc), "set the key or server named above (openpista init)")
    name = f"provider {llm.name}/{llm.model}"
    try:
        answer = asyncio.run(asyncio.wait_for(_round_trip(llm), PROVIDER_TIMEOUT))
    except ProviderError as exc:
        return Check(name, False, str(exc), "see the reason above; `openpista model test` retries")
    except TimeoutError:
        return Check(
            name,
            False,
            f"no answer within {PROVIDER_TIMEOUT:.0f} s",
            "check the server and network",
        )
    return Check(name, True, f"answered {' '.join(answer.split())[:60]!r}")


async def _round_trip(llm: Any) -> str:
    from openpista.models import Message
    from openpista.providers.base import warm_up

    await warm_up(llm)
    result = await llm.complete([Message(role="user", content=PROVIDER_PROMPT)], [])
    return str(result.text) or "(empty answer)"


def check_channels(host: PluginHost, context: PluginContext, settings: Settings) -> Iterator[Check]:
    """Every enabled channel: a plugin provides it, its table is valid, it can be built,
    and a port it listens on is free (or held by the running daemon)."""
    from openpista.gateway.gateway import channel_problem
    from openpista.runtime import channel_factories

    factories = channel_factories(host, context)
    models = {model.section: model for _, model in host.collect("register_settings", str)}
    for name in sorted({"cli", *settings.channels}):
        table = settings.channels.get(name, {})
        if not table.get("enabled", name == "cli"):
            continue
        label = f"channel {name}"
        factory = factories.get(name)
        if factory is None:
            fix = f"install the plugin that provides it, or set [channels.{name}] enabled = false"
            yield Check(label, False, "no loaded plugin provides it", fix)
            continue
        try:
            factory(table, settings)
            options = context.settings(models[f"channels.{name}"]) if name != "cli" else None
        except KeyError:
            options = None
        except Exception as exc:
            yield Check(label, False, channel_problem(exc), f"correct [channels.{name}]")
            continue
        yield _port_check(label, name, options, settings)


async def run_online(checks: list[DoctorCheck], seconds: float) -> list[Check]:
    """The plugins' online checks, concurrently, each cut at ``seconds``; in order."""
    return list(await asyncio.gather(*(_online(check, seconds) for check in checks)))


async def _online(check: DoctorCheck, seconds: float) -> Check:
    from openpista.doctor import Unreachable

    name, fix = _one_line(check.name), _one_line(check.unreachable_fix)
    try:
        async with asyncio.timeout(seconds):
            found = await check.run()
    except Unreachable as exc:
        return Check(name, False, _one_line(str(exc)), fix)
    except TimeoutError:
        return Check(name, False, f"no answer within {seconds:g} s", fix)
    except Exception as exc:  # a plugin's bug: its line says so, the other checks run
        detail = f"the check failed: {type(exc).__name__}: {_one_line(str(exc))}"
        return Check(name, False, detail, "report it to the plugin's author")
    return Check(name, found.ok, _one_line(found.detail), _one_line(found.fix))


def _one_line(text: str) -> str:
    """``text`` as one printable line: what a service answered (a token check quotes its
    error) reaches the terminal without control characters or escape sequences."""
    return " ".join(CONTROL.sub(" ", text).split())[:MAX_LINE]


def _port_check(label: str, name: str, options: Any, settings: Settings) -> Check:
    """Whether every address the channel listens on is free (or held by the daemon), as a
    TCP port or, for a settings model whose ``transport`` is ``"udp"`` (QUIC), a UDP one."""
    udp = getattr(options, "transport", "tcp") == "udp"
    free = []
    for option, host, port in _listeners(options):
        address = f"{host}:{port}" + ("/udp" if udp else "")
        try:
            _bind(host, port, udp)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                fix = f"set [channels.{name}] {option}host to an address of this machine"
                return Check(label, False, f"cannot listen on {address}: {exc.strerror}", fix)
            if _daemon_serves(settings, name):
                return Check(label, True, f"served by the running daemon on {address}")
            fix = f"stop what listens there, or set [channels.{name}] {option}port to a free one"
            return Check(label, False, f"port {address} is in use", fix)
        free.append(address)
    return Check(label, True, ", ".join(["settings valid", *(f"{a} free" for a in free)]))


def _bind(host: str, port: int, udp: bool) -> None:
    """Bind ``host:port`` for a moment (TCP, or UDP); raises the OSError of a failure."""
    if not udp:
        with socket.create_server((host, port)):
            return
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.bind(address)


def _listeners(options: Any) -> Iterator[tuple[str, str, int]]:
    """``(option prefix, host, port)`` of every address a channel's settings say it listens
    on: ``host``/``port``, and ``webhook_*`` / ``http_*`` in a webhook or HTTP ``mode``."""
    mode = getattr(options, "mode", None)
    for prefix in LISTENER_PREFIXES:
        host, port = (
            getattr(options, f"{prefix}host", None),
            getattr(options, f"{prefix}port", None),
        )
        if not isinstance(host, str) or not isinstance(port, int) or port == 0:
            continue
        if prefix and isinstance(mode, str) and mode not in ("webhook", "http"):
            continue
        yield prefix, host, port


def _daemon_serves(settings: Settings, channel: str) -> bool:
    from openpista.gateway.daemon import PidFile

    running = PidFile(settings.gateway.pid_file).state()
    return running is not None and channel in running.channels


def check_programs(host: PluginHost, settings: Settings) -> Iterator[Check]:
    """The programs that the loaded tool plugins drive, for those whose table is enabled."""
    tools = settings.tools.model_extra or {}

    def wanted(plugin: str) -> bool:
        report = host.reports.get(plugin)
        table = tools.get(plugin)
        enabled = not isinstance(table, dict) or table.get("enabled", True) is not False
        return report is not None and report.loaded and enabled

    if wanted("docker"):
        yield _docker_check((tools.get("docker") or {}).get("docker_host"))
    if wanted("browser"):
        configured = (tools.get("browser") or {}).get("executable")
        names = (configured,) if isinstance(configured, str) else BROWSER_NAMES
        yield _program_check(
            "chromium", names, "install chromium, or set [tools.browser] executable"
        )
    if wanted("desktop"):  # its display: the desktop plugin's own doctor check
        yield _program_check("tesseract", ("tesseract",), "install tesseract-ocr (screen OCR)")


def _program_check(name: str, programs: tuple[str, ...], fix: str) -> Check:
    for program in programs:
        path = shutil.which(program)
        if path:
            return Check(name, True, path, fix)
    return Check(name, False, f"not found on PATH (looked for {', '.join(programs)})", fix)


def _docker_check(configured: object) -> Check:
    """Ask the Docker engine at ``configured``, ``$DOCKER_HOST`` or the default socket for
    ``/_ping``."""
    url = configured if isinstance(configured, str) else os.environ.get("DOCKER_HOST", "")
    url = url or f"unix://{DOCKER_SOCKET}"
    fix = (
        "start the Docker engine (or podman's socket) and set DOCKER_HOST, "
        "or set [tools.docker] enabled = false"
    )
    try:
        if url.startswith("unix://"):
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(5)
            conn.connect(url.removeprefix("unix://"))
        elif url.startswith(("tcp://", "http://")):
            host, _, port = url.split("://", 1)[1].rstrip("/").rpartition(":")
            conn = socket.create_connection((host, int(port)), timeout=5)
        else:
            return Check("docker", False, f"unsupported Docker address {url}", fix)
        with conn:
            conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = conn.recv(4096)
    except (OSError, ValueError) as exc:
        return Check("docker", False, f"no Docker engine at {url}: {exc}", fix)
    if not reply.startswith(b"HTTP/1.") or b" 200 " not in reply.split(b"\r\n", 1)[0]:
        return Check("docker", False, f"{url} did not answer like a Docker engine", fix)
    return Check("docker", True, f"engine answers at {url}")


def check_database(url: str) -> Check:
    """Open the memory database and compare its schema revision with this version's."""
    from sqlalchemy.engine import make_url

    from openpista.cli.database import database_problem
    from openpista.memory import MemoryStoreError
    from openpista.memory.engine import Database, expand_database_url, safe_url
    from openpista.memory.schema import HEAD_REVISION

    try:
        where = safe_url(url)
        parsed = make_url(expand_database_url(url))
        if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").exists():
            return _new_sqlite(where, Path(parsed.database or ""))
        revisions = asyncio.run(_revisions(Database(url)))
    except Exception as exc:  # driver errors of every kind; the message names the fix
        if not isinstance(exc, MemoryStoreError) and database_problem(exc, url) is None:
            detail = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        else:
            detail = database_problem(exc, url) or str(exc)
        return Check("database", False, detail, "see above ([database] url)")
    if revisions == {HEAD_REVISION}:
        return Check("database", True, f"{where}, schema at revision {HEAD_REVISION}")
    if not revisions or max(revisions) < HEAD_REVISION:
        shown = ", ".join(sorted(revisions)) or "none"
        return Check("database", True, f"{where}, revision {shown}: `openpista start` migrates it")
    return Check(
        "database",
        False,
        f"{where} has schema revision {', '.join(sorted(revisions))}, newer than this "
        f"openpista ({HEAD_REVISION})",
        "upgrade openpista, or name another database in [database] url",
    )


def check_semantic_search(host: PluginHost, settings: Settings) -> Check:
    """``[memory.embeddings]``: off, or one query embedded, and how vectors are compared."""
    from openpista.config import ConfigError
    from openpista.memory.embeddings import VECTOR_BACKEND
    from openpista.providers.base import ProviderError
    from openpista.providers.embedder import build_embedder
    from openpista.runtime import build_providers

    name, fix = "semantic search", "correct [memory.embeddings] (docs/memory.md)"
    try:
        embedder = build_embedder(settings, build_providers(host))
        if embedder is None:
            return Check(name, None, 'off ([memory.embeddings] model = "none")')
        coro = embedder.embed(["openpista doctor"])
        vectors = asyncio.run(asyncio.wait_for(coro, PROVIDER_TIMEOUT))
    except (ConfigError, ProviderError) as exc:
        return Check(name, False, str(exc), fix)
    except TimeoutError:
        return Check(name, False, f"no embedding within {PROVIDER_TIMEOUT:.0f} s", fix)
    size = len(vectors[0]) if vectors and isinstance(vectors[0], list) else 0
    detail = f"{embedder.model}: {size}-dimensional vectors, nearest by {VECTOR_BACKEND}"
    return Check(name, True, detail)


def _new_sqlite(where: str, path: Path) -> Check:
    existing = next(p for p in path.absolute().parents if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        fix = "name a file in a directory you can write to in [database] url"
        return Check("database", False, f"{where}: cannot create it ({existing} is read-only)", fix)
    return Check("database", True, f"{where} is created and migrated at first start")


async def _revisions(database: Any) -> set[str]:
    from sqlalchemy import inspect, text

    from openpista.memory.tables import VERSION_TABLE

    def read(conn: Any) -> set[str]:
        if not inspect(conn).has_table(VERSION_TABLE):
            return set()
        query = text(f"SELECT version_num FROM {VERSION_TABLE}")  # noqa: S608  a constant name
        return {str(row[0]) for row in conn.execute(query)}

    try:
        result: set[str] = await database.transaction(read, write=False)
    finally:
        await database.close()
    return result


def check_permissions(config: Path) -> Iterator[Check]:
    """The state directory is the user's alone (0700); files holding secrets are 0600."""
    from openpista.auth.credentials import default_credentials_path
    from openpista.home import home_dir

    home = home_dir()
    yield _mode_check("home", home, f"chmod 700 {home}")
    credentials = default_credentials_path()
    yield _mode_check("credentials", credentials, f"chmod 600 {credentials} (rotate the keys)")
    if _holds_secrets(config):
        yield _mode_check("config file", config, f"chmod 600 {config} (it holds secrets)")


def _holds_secrets(path: Path) -> bool:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return False
    return SECRET_OPTION.search(text) is not None


def _mode_check(name: str, path: Path, fix: str) -> Check:
    try:
        info = path.stat()
    except FileNotFoundError:
        return Check(name, None, f"{path} does not exist yet")
    except OSError as exc:
        return Check(name, False, f"{path}: {exc.strerror}", fix)
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid != os.getuid():
        return Check(name, False, f"{path} belongs to another user (uid {info.st_uid})", fix)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return Check(name, False, f"{path} is readable by others (mode {mode:o})", fix)
    return Check(name, True, f"{path} is private (mode {mode:o})")
