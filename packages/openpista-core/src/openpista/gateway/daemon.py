"""The daemon of ``openpista start``: PID file, channels, cron, signals, graceful shutdown.

The PID file holds the process id; a state file beside it (``.json``) holds the start time,
the serving channels, the addresses listened on and whether the daemon is ready, for
``openpista status``. A PID file naming a process that no
longer runs is stale and replaced. SIGTERM and Ctrl-C stop accepting messages, give
in-flight turns ``[gateway] shutdown_deadline`` seconds, cancel the rest, close memory and
the channels, remove both files and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openpista import collector
from openpista.models import ChannelEvent
from openpista.plugin_context import DaemonServices
from openpista.serving import Listener

if TYPE_CHECKING:
    from openpista.channels import ChannelAdapter
    from openpista.cluster import ClusterMember
    from openpista.config import CronEntry, Settings
    from openpista.plugin_context import PluginContext
    from openpista.plugins import PluginHost

log = logging.getLogger(__name__)


class DaemonRunningError(RuntimeError):
    """Another daemon holds the PID file."""


@dataclass(frozen=True)
class DaemonState:
    """What ``openpista status`` reports about a running daemon."""

    pid: int
    started_at: float
    channels: list[str]
    listeners: list[Listener] = field(default_factory=list)
    ready: bool = False

    @property
    def uptime(self) -> float:
        return max(0.0, time.time() - self.started_at)


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (also when it belongs to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class PidFile:
    """The PID file and its state file; :meth:`acquire` refuses while another daemon runs."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser()
        self.state_path = self.path.with_suffix(".json")

    def running_pid(self) -> int | None:
        """The PID of a running daemon, or None (no file, garbage, or a stale PID)."""
        try:
            pid = int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid > 0 and pid_alive(pid) else None

    def acquire(self, channels: list[str]) -> DaemonState:
        """Write our PID (atomically, exclusive) and state, and return that state; replace
        a stale file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pid = self.running_pid()
                if pid is not None and pid != os.getpid():
                    raise DaemonRunningError(
                        f"openpista is already running (PID {pid}, PID file {self.path}); "
                        "stop it first with `kill "
                        f"{pid}`"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(f"{os.getpid()}\n")
            state = DaemonState(os.getpid(), time.time(), channels)
            self.write_state(state)
            return state
        raise DaemonRunningError(f"cannot take the PID file {self.path}")

    def write_state(self, state: DaemonState) -> None:
        """Replace the state file (atomically: ``status`` never reads half of it)."""
        partial = self.state_path.with_suffix(".json.partial")
        partial.write_text(json.dumps(asdict(state)))
        partial.replace(self.state_path)

    def release(self) -> None:
        """Remove both files if they are ours."""
        with contextlib.suppress(OSError, ValueError):
            if int(self.path.read_text().strip()) == os.getpid():
                self.path.unlink()
                self.state_path.unlink(missing_ok=True)

    def state(self) -> DaemonState | None:
        """The running daemon's state, or None when it does not run."""
        pid = self.running_pid()
        if pid is None:
            return None
        try:
            data: dict[str, Any] = json.loads(self.state_path.read_text())
            return DaemonState(
                pid,
                float(data["started_at"]),
                [str(name) for name in data["channels"]],
                [Listener(str(item["name"]), str(item["url"])) for item in data["listeners"]],
                data["ready"] is True,
            )
        except (OSError, ValueError, KeyError, TypeError):
            return DaemonState(pid, time.time(), [])


def enabled_channels(host: PluginHost, context: PluginContext) -> dict[str, Any]:
    """Channel factories whose ``[channels.<name>]`` is enabled (``cli`` is by default)."""
    from openpista.runtime import channel_factories

    channels = context.config.channels
    return {
        name: factory
        for name, factory in channel_factories(host, context).items()
        if channels.get(name, {}).get("enabled", name == "cli")
    }


async def serve(settings: Settings, *, terminal: bool = True) -> int:
    """Run the daemon until a signal or the last channel closes; returns the exit code.

    ``terminal=False`` leaves out the terminal channel (for a daemon without a console).
    """
    from openpista.config import ConfigError
    from openpista.scheduler import validate_cron

    validate_cron(settings.cron)
    pid_file = PidFile(settings.gateway.pid_file)
    if (pid := pid_file.running_pid()) is not None:
        raise DaemonRunningError(f"openpista is already running (PID {pid}, {pid_file.path})")
    try:
        cluster = await _join_cluster(settings)
    except ConfigError as exc:  # [cluster] on SQLite, PostgreSQL unreachable, id taken
        print(f"❌ {exc}", file=sys.stderr)
        return 1
    try:
        return await _serve(settings, terminal, pid_file, cluster)
    finally:
        if cluster is not None:
            await cluster.close()


async def _join_cluster(settings: Settings) -> ClusterMember | None:
    """This daemon as a replica of ``[cluster]``, or ``None`` when cluster mode is off."""
    if not settings.cluster.enabled:
        return None
    from openpista.cluster import ClusterMember

    member = await ClusterMember.join(settings)
    print(f"openpista: replica {member.replica_id} joined the cluster", file=sys.stderr)
    return member


async def _serve(
    settings: Settings, terminal: bool, pid_file: PidFile, cluster: ClusterMember | None
) -> int:
    from openpista.control.protocol import socket_path
    from openpista.control.server import ControlChannel, ControlSocketError, bind_control
    from openpista.gateway.approvals import ApprovalBroker
    from openpista.gateway.gateway import Gateway
    from openpista.plugins import PluginHost
    from openpista.runtime import Runtime
    from openpista.scheduler import CronScheduler

    runtime = await Runtime.open(settings, PluginHost.load())
    stopped = asyncio.Event()
    try:
        for problem in runtime.problems:
            log.warning("%s", problem)
        try:
            runtime.agent()
        except Exception as exc:  # first run: no key, no server; the message names the fix
            print(f"❌ {exc}", file=sys.stderr)
            return 1
        factories = enabled_channels(runtime.host, runtime.context)
        for name, table in settings.channels.items():
            if table.get("enabled") and name not in factories:
                print(
                    f"❌ channel {name} is not served: no loaded plugin provides it "
                    "(`openpista plugins` lists the channels)",
                    file=sys.stderr,
                )
        if not terminal:
            factories.pop("cli", None)
        adapters = _build_adapters(factories, settings, stopped)
        if not adapters:
            print(
                "❌ no channel is enabled: set enabled = true in a [channels.<name>] table "
                "(`openpista plugins` lists the channels)",
                file=sys.stderr,
            )
            return 1
        try:  # the local control socket (openpista run/sessions/status/send)
            control = ControlChannel(bind_control(socket_path()), pid_file)
        except ControlSocketError as exc:
            print(f"❌ {exc}", file=sys.stderr)
            return 1
        broker = ApprovalBroker.for_runtime(runtime)
        gateway = Gateway(runtime, [*adapters, control], approvals=broker)
        if cluster is not None:
            from openpista.cluster_approvals import ClusterApprovals
            from openpista.cluster_budget import share_budget_limits
            from openpista.cluster_handover import Handover

            gateway.router.leases = cluster
            runtime.context.leadership = cluster
            slots = settings.gateway.max_concurrent_turns
            gateway.handover = await Handover.start(cluster, gateway, slots)
            runtime.context.deliveries = gateway.handover.deliveries
            gateway.approvals_elsewhere = ClusterApprovals(cluster, gateway.handover.pool, broker)
            await gateway.approvals_elsewhere.start()
            await share_budget_limits(cluster, gateway.handover.pool, runtime.meter)
        started = pid_file.acquire([a.name for a in adapters])
        try:
            leads = None if cluster is None else (lambda: cluster.leads)
            claim = None if cluster is None else cluster.claim_run
            scheduler = partial(CronScheduler, leads=leads, claim=claim)
            return await _run(gateway, settings, stopped, scheduler, pid_file, started)
        finally:
            pid_file.release()
    finally:
        await runtime.close()


def _build_adapters(
    factories: dict[str, Any], settings: Settings, stopped: asyncio.Event
) -> list[ChannelAdapter]:
    """Build each enabled channel; one whose configuration is unusable is reported (one ❌
    line naming the option) and left out, and the others serve."""
    from openpista.gateway.gateway import channel_problem

    adapters = []
    for name, factory in factories.items():
        try:
            adapter = factory(settings.channels.get(name, {}), settings)
        except Exception as exc:
            print(f"❌ channel {name} is not served: {channel_problem(exc)}", file=sys.stderr)
            continue
        adapters.append(adapter)
    if [a.name for a in adapters] == ["cli"]:
        # The terminal is the only way in: when it closes, so does the daemon.
        adapters[0].on_close = stopped.set
    return adapters


async def _run(
    gateway: Any,
    settings: Settings,
    stopped: asyncio.Event,
    scheduler_cls: Any,
    pid_file: PidFile,
    started: DaemonState,
) -> int:
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()

    def on_signal() -> None:
        if not signalled.is_set():
            deadline = settings.gateway.shutdown_deadline
            print(
                f"openpista is stopping: turns in progress get {deadline:g} s "
                "([gateway] shutdown_deadline); new messages are refused",
                file=sys.stderr,
                flush=True,
            )
        signalled.set()
        gateway.stop_accepting()
        stopped.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)

    async def dispatch(entry: CronEntry) -> None:
        await gateway.submit(
            ChannelEvent(
                channel_id=entry.channel,
                sender="cron",
                text=entry.message,
                metadata={"cron": entry.name or entry.schedule},
            )
        )

    scheduler = scheduler_cls(settings.cron, dispatch)
    channels = tuple(adapter.name for adapter in gateway.adapters)
    services = DaemonServices(gateway.submit, channels)
    # Plugins' chat commands may use the services from the first message a channel reads.
    gateway.runtime.context.services = services
    await gateway.start()
    metrics = None
    if settings.metrics.enabled:  # wsgiref's server imported only then
        from openpista.observability.metrics_server import serve_metrics

        metrics = serve_metrics(gateway.runtime.recorder, settings.metrics, channels)
    # The worker log opens before the announcement only when its endpoint listens (its
    # address is announced); else right after: the channels already take messages anyway.
    workers = await _start_worker_endpoint(settings) if settings.workers.enabled else None
    cron_task = asyncio.create_task(scheduler.run())
    await gateway.runtime.daemon_started(services)
    serving = _announce_serving(gateway, pid_file, started)
    collector.resume()  # paused by `openpista start` for its start-up
    readiness = asyncio.create_task(_announce_ready(gateway, pid_file, serving))
    try:
        if not settings.workers.enabled:
            workers = await _start_worker_endpoint(settings)
        await stopped.wait()
    finally:
        readiness.cancel()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await gateway.runtime.daemon_stopping()
        await scheduler.stop()
        cron_task.cancel()
        await asyncio.gather(cron_task, return_exceptions=True)
        # A signal gives turns the configured deadline; a closed terminal lets them finish.
        await gateway.stop(drain=not signalled.is_set())
        gateway.runtime.context.services = None  # the last drained message could still use it
        if workers is not None:
            await workers.stop()
        if metrics is not None:
            metrics.stop()
    return 0


async def _start_worker_endpoint(settings: Settings) -> Any:
    """The worker reports (tasks recorded for the history; the ``[workers]`` endpoint when
    enabled); one that cannot start is reported (one ❌ line) and the daemon serves without
    it."""
    from openpista.memory import MemoryStoreError
    from openpista.worker_api import WorkerEndpoint

    endpoint = WorkerEndpoint(settings)
    try:
        await endpoint.start()
    except (OSError, RuntimeError, MemoryStoreError) as exc:
        print(f"❌ worker reports are not served: {exc}", file=sys.stderr)
        return None
    return endpoint


def _announce_serving(gateway: Any, pid_file: PidFile, started: DaemonState) -> DaemonState:
    """Print the serving channels and every bound address (a port of 0 becomes a real one)
    on stderr, and record them for ``openpista status``."""
    from openpista.serving import listeners

    served = [a.name for a in gateway.adapters if a.channel_prefix != "local:"]  # not control
    state = replace(started, channels=served, listeners=listeners())
    print(f"openpista serves: {', '.join(state.channels) or 'no channel'}", file=sys.stderr)
    for listener in state.listeners:
        print(f"openpista: {listener.name} listens on {listener.url}", file=sys.stderr)
    pid_file.write_state(state)
    return state


async def _announce_ready(gateway: Any, pid_file: PidFile, state: DaemonState) -> None:
    """Once the provider has warmed up: one line on stderr, and ``ready`` in the state."""
    began = time.monotonic()
    await gateway.wait_ready()
    provider, model = gateway.current_model
    print(
        f"openpista is ready: {provider}/{model} (warm-up {time.monotonic() - began:.1f} s)",
        file=sys.stderr,
        flush=True,
    )
    pid_file.write_state(replace(state, ready=True))
