"""Scheduled messages: the ``[[cron]]`` entries of the config, run by the daemon.

Schedules are cron expressions parsed by :mod:`croniter`, in one of two forms:

* 5 fields, ``minute hour day-of-month month day-of-week`` (``0 8 * * mon-fri``), or
* 6 fields with **seconds first**, ``second minute hour day-of-month month day-of-week``
  (``*/5 * * * * *`` is every five seconds, ``30 0 8 * * *`` is 08:00:30 daily).

The ``@hourly``/``@daily``/``@weekly``/``@monthly``/``@yearly`` shorthands also work.
Expressions are evaluated in the local time of the machine (its ``TZ``/``/etc/localtime``).

A run that was missed (the machine slept, the clock jumped forward) fires once when the
scheduler notices, and the schedule continues from the current time: missed runs are not
replayed one by one. See ``docs/cron.md``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING

from openpista.config import ConfigError, CronEntry

if TYPE_CHECKING:
    from croniter import croniter

log = logging.getLogger(__name__)

Dispatch = Callable[[CronEntry], Awaitable[None]]

#: The longest single sleep of :class:`CronScheduler`, in seconds. Sleeping in slices lets
#: it notice a suspend/resume or a wall-clock change within this delay.
MAX_SLEEP = 30.0
REPLAY_CHECK = 1.0
"""Seconds between checks of a replica that does not lead whether it leads now (cluster
mode), so that a run missed during a leader change fires soon after it."""

_FIELDS_HELP = (
    "5 fields (minute hour day-of-month month day-of-week) "
    "or 6 with seconds first (second minute hour day-of-month month day-of-week)"
)
_SHORTHANDS = frozenset(
    ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")
)


def entry_label(entry: CronEntry, index: int) -> str:
    """How an entry is named in logs and listings: its ``name``, else ``#index``."""
    return entry.name or f"#{index}"


def _cron(schedule: str, start: datetime) -> croniter[datetime]:
    from croniter import croniter  # on use: a daemon without cron entries never needs it

    return croniter(schedule, start, ret_type=datetime, second_at_beginning=True)


def _schedule_problem(schedule: str) -> str | None:
    """Why ``schedule`` is unusable, or ``None`` when it is fine."""
    expr = schedule.strip()
    fields = expr.split()
    if expr.startswith("@"):
        if expr.lower() not in _SHORTHANDS:
            return "unknown shorthand; use " + ", ".join(sorted(_SHORTHANDS))
    elif len(fields) not in (5, 6):
        return f"expected {_FIELDS_HELP}, got {len(fields)}"
    from croniter import CroniterBadDateError, CroniterError

    try:
        _cron(expr, datetime(2000, 1, 1)).get_next()
    except CroniterBadDateError:
        return "no date ever matches it (e.g. day 31 of a 30-day month)"
    except CroniterError as exc:
        why = str(exc).removeprefix(f"[{expr}] ").removeprefix("is not acceptable, ")
        return why or "not a cron expression"
    return None


def validate_cron(entries: Sequence[CronEntry]) -> None:
    """Check every entry's schedule; raise :class:`ConfigError` naming the first bad one.

    The message reads ``cron[2] (name 'x'): invalid schedule '61 * * * *': <why>``; the index
    counts from 0, in file order, disabled entries included.
    """
    for index, entry in enumerate(entries):
        problem = _schedule_problem(entry.schedule)
        if problem is not None:
            named = f" (name {entry.name!r})" if entry.name else ""
            raise ConfigError(
                f"cron[{index}]{named}: invalid schedule {entry.schedule!r}: {problem}"
            )


def _to_local_naive(moment: datetime, tz: tzinfo | None) -> datetime:
    local = moment.astimezone(tz) if tz is not None else moment.astimezone()
    return local.replace(tzinfo=None)


def _localize(naive: datetime, tz: tzinfo | None, fold: int) -> datetime:
    naive = naive.replace(fold=fold)
    return naive.replace(tzinfo=tz) if tz is not None else naive.astimezone()


def next_after(schedule: str, after: datetime, tz: tzinfo | None = None) -> datetime:
    """The first time strictly after ``after`` (timezone-aware) that ``schedule`` matches.

    The expression is evaluated on the wall clock of ``tz`` (default: the machine's local
    time zone); the result is aware, with that zone's UTC offset at the time. A wall-clock
    time that occurs twice (the autumn DST change) matches once; one that does not exist
    (spring) maps to the shifted instant.
    """
    if after.tzinfo is None:
        raise ValueError("next_after needs a timezone-aware datetime")
    it = _cron(schedule.strip(), _to_local_naive(after, tz))
    # Compare in UTC: aware datetimes sharing a tzinfo compare by wall clock, ignoring fold.
    floor = after.astimezone(UTC)
    for _ in range(4):  # a repeated wall-clock hour can yield candidates already past
        naive = it.get_next()
        for fold in (0, 1):
            candidate = _localize(naive, tz, fold)
            if candidate.astimezone(UTC) > floor:
                # A fixed offset: no fold left to trip up comparisons with other times.
                offset = candidate.utcoffset() or timedelta(0)
                return candidate.astimezone(timezone(offset, candidate.tzname() or str(offset)))
    raise RuntimeError(f"no run of {schedule!r} found after {after.isoformat()}")


def next_runs(
    entries: Sequence[CronEntry],
    now: datetime,
    count: int = 1,
    *,
    tz: tzinfo | None = None,
) -> list[tuple[CronEntry, list[datetime]]]:
    """The next ``count`` run times of every entry after ``now`` (aware), in entry order.

    Disabled entries are included (their times say when they would run); the times are aware
    datetimes in local time (``tz`` when given). Call :func:`validate_cron` first.
    """
    result: list[tuple[CronEntry, list[datetime]]] = []
    for entry in entries:
        times: list[datetime] = []
        moment = now
        for _ in range(count):
            moment = next_after(entry.schedule, moment, tz)
            times.append(moment)
        result.append((entry, times))
    return result


class CronScheduler:
    """Calls ``dispatch(entry)`` whenever an enabled entry's schedule comes due.

    ``clock`` (aware "now", default the system clock) and ``sleep`` (default
    :func:`asyncio.sleep`) are injectable so tests can drive time. ``tz`` sets the time zone
    the expressions are read in (default: the machine's local time zone).

    Each run is its own task: a slow or failing dispatch never delays the others or stops the
    scheduler (failures are logged with the entry's name). An entry whose previous dispatch is
    still running when it comes due again is skipped for that run, with a warning.

    ``leads`` (cluster mode: whether this replica is the cron leader now) is asked at each
    due run; a replica that does not lead keeps the schedule but fires nothing, so each
    run fires once across replicas. ``claim(key, due)`` (cluster mode: records the run
    ``due`` of the entry ``key`` in the shared database; whether no replica had) is asked
    before each run fires: a run fires once even while two replicas think they lead, and a
    replica that becomes the leader fires once each entry's last run that came due while
    nobody led (a leader change), at once.
    """

    def __init__(
        self,
        entries: Sequence[CronEntry],
        dispatch: Dispatch,
        *,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        tz: tzinfo | None = None,
        leads: Callable[[], bool] | None = None,
        claim: Callable[[str, datetime], Awaitable[bool]] | None = None,
    ) -> None:
        validate_cron(entries)
        self._leads = leads
        self._claim = claim
        self._missed: dict[int, datetime] = {}  # entry -> its last run due while not leading
        self._entries = [(i, e) for i, e in enumerate(entries) if e.enabled]
        self._dispatch = dispatch
        self._clock = clock or (lambda: datetime.now(UTC))
        self._sleep = sleep or asyncio.sleep
        self._tz = tz
        self._running: dict[int, asyncio.Task[None]] = {}
        self._run_task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def in_flight(self) -> int:
        """How many dispatches are running now."""
        return sum(not task.done() for task in self._running.values())

    async def run(self) -> None:
        """Fire entries as they come due, until cancelled or :meth:`stop` is called.

        On cancellation, dispatches still running are cancelled too (use :meth:`stop` to
        give them time to finish first). With no enabled entry, it just waits.
        """
        if self._run_task is not None:
            raise RuntimeError("CronScheduler.run() is already running")
        if self._stopping:
            return
        self._run_task = asyncio.current_task()
        try:
            if not self._entries:
                await asyncio.Event().wait()
            now = self._clock()
            due = {i: self._next(e, now) for i, e in self._entries}
            while True:
                soonest = min(due.values())
                now = self._clock()
                self._replay_missed(now, due)
                if now < soonest:
                    delay = (soonest - now).total_seconds()
                    await self._sleep(min(delay, REPLAY_CHECK if self._missed else MAX_SLEEP))
                    continue
                for index, entry in self._entries:
                    if due[index] <= now:
                        self._fire(index, entry, due[index], now)
                        due[index] = self._next(entry, now)
                # Let the new tasks start before the next sleep (matters with fake sleeps).
                await asyncio.sleep(0)
        finally:
            self._run_task = None
            if not self._stopping:
                await self._cancel_running()

    def _next(self, entry: CronEntry, now: datetime) -> datetime:
        # In UTC, so that comparing and subtracting never depend on the wall clock's fold.
        return next_after(entry.schedule, now, self._tz).astimezone(UTC)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop firing; give running dispatches ``grace`` seconds to finish, then cancel them."""
        self._stopping = True
        task = self._run_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait([task])
        if self._running:
            await asyncio.wait(set(self._running.values()), timeout=grace)
        await self._cancel_running()

    def _replay_missed(self, now: datetime, due: dict[int, datetime]) -> None:
        """Become the leader: fire each entry's last run that came due while another
        replica led (or none did), unless its next run is due now anyway; :meth:`_guarded`
        claims it, so a run the old leader fired does not fire again."""
        if not self._missed or self._leads is None or not self._leads():
            return
        missed, self._missed = self._missed, {}
        for index, entry in self._entries:
            if index in missed and due[index] > now:
                self._fire(index, entry, missed[index], now)

    def _fire(self, index: int, entry: CronEntry, due: datetime, now: datetime) -> None:
        label = entry_label(entry, index)
        if self._leads is not None and not self._leads():
            log.debug("cron %s: another replica leads cron; not firing %s", label, due)
            if self._claim is not None:
                self._missed[index] = due
            return
        self._missed.pop(index, None)
        previous = self._running.get(index)
        if previous is not None and not previous.done():
            log.warning("cron %s: previous run still in progress; skipping %s", label, due)
            return
        if now - due > timedelta(seconds=MAX_SLEEP + 1):
            log.info("cron %s: running late (due %s), missed runs are not replayed", label, due)
        task = asyncio.create_task(self._guarded(label, entry, due), name=f"cron {label}")
        self._running[index] = task
        task.add_done_callback(lambda done: self._forget(index, done))

    def _forget(self, index: int, task: asyncio.Task[None]) -> None:
        if self._running.get(index) is task:
            del self._running[index]

    async def _guarded(self, label: str, entry: CronEntry, due: datetime) -> None:
        try:
            if self._claim is not None:
                key = f"{label}\x1f{entry.schedule}\x1f{entry.channel}\x1f{entry.message}"
                if not await self._claim(key, due):
                    log.info("cron %s: the run due %s fired on another replica", label, due)
                    return
            log.info("cron %s: sending to %s", label, entry.channel)
            await self._dispatch(entry)
        except Exception:
            log.exception("cron %s: dispatch to %s failed", label, entry.channel)

    async def _cancel_running(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
