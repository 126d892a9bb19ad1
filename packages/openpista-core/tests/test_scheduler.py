"""The cron scheduler (driven by a fake clock) and ``openpista cron list``."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from openpista.cli.main import cli
from openpista.config import ConfigError, CronEntry
from openpista.scheduler import CronScheduler, next_after, next_runs, validate_cron

T0 = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)


def entry(schedule: str, name: str | None = None, **kw: object) -> CronEntry:
    return CronEntry.model_validate(
        {"schedule": schedule, "channel": "cli:test", "message": "hi", "name": name, **kw}
    )


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "why"),
    [
        ("61 * * * *", "out of range"),
        ("* * *", "expected 5 fields"),
        ("0 0 0 * * * 2030", "got 7"),
        ("0 0 31 2 *", "no date ever matches"),
        ("*/0 * * * *", "step '0'"),
        ("every day", "expected 5 fields"),
        ("@reboot", "unknown shorthand; use @annually, @daily"),
    ],
)
def test_invalid_schedule_names_the_entry(schedule: str, why: str) -> None:
    entries = [entry("0 8 * * *"), entry("* * * * *"), entry(schedule, name="x")]
    with pytest.raises(ConfigError) as caught:
        validate_cron(entries)
    message = str(caught.value)
    assert message.startswith(f"cron[2] (name 'x'): invalid schedule {schedule!r}: ")
    assert why in message


def test_invalid_schedule_without_name_and_scheduler_refuses_it() -> None:
    with pytest.raises(ConfigError, match=r"^cron\[0\]: invalid schedule '99 \* \* \* \*'"):
        CronScheduler([entry("99 * * * *")], _never_called)


@pytest.mark.parametrize(
    "schedule", ["0 8 * * *", "0 8 * * mon-fri", "*/5 * * * * *", "30 0 8 * * *", "@daily"]
)
def test_valid_schedules(schedule: str) -> None:
    validate_cron([entry(schedule)])


async def _never_called(entry: CronEntry) -> None:
    raise AssertionError("dispatched")


# -- next run times ---------------------------------------------------------------------------


def test_next_runs_five_and_six_fields() -> None:
    now = datetime(2024, 1, 1, 7, 59, 30, tzinfo=UTC)
    daily, seconds, at_second = entry("0 8 * * *"), entry("*/20 * * * * *"), entry("30 0 8 * * *")
    result = next_runs([daily, seconds, at_second], now, count=3, tz=UTC)
    assert [e for e, _ in result] == [daily, seconds, at_second]
    assert result[0][1] == [datetime(2024, 1, d, 8, 0, tzinfo=UTC) for d in (1, 2, 3)]
    # seconds first: every 20 s; a time equal to "now" is not "next"
    assert result[1][1] == [
        datetime(2024, 1, 1, 7, 59, 40, tzinfo=UTC),
        datetime(2024, 1, 1, 8, 0, 0, tzinfo=UTC),
        datetime(2024, 1, 1, 8, 0, 20, tzinfo=UTC),
    ]
    assert result[2][1][0] == datetime(2024, 1, 1, 8, 0, 30, tzinfo=UTC)


def test_next_runs_default_local_time_is_aware() -> None:
    [(_, times)] = next_runs([entry("0 8 * * *")], datetime.now(UTC), count=2)
    assert all(t.tzinfo is not None for t in times)
    assert times[0].astimezone().hour == 8
    assert times[1] - times[0] >= timedelta(hours=23)  # a DST change can shorten a day


def test_next_after_needs_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_after("* * * * *", datetime(2024, 1, 1))


def test_wall_clock_in_the_given_zone_and_dst() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 08:00 in Berlin is 07:00 UTC in winter
    [(_, [first])] = next_runs([entry("0 8 * * *")], T0, tz=berlin)
    assert first == datetime(2024, 1, 2, 7, 0, tzinfo=UTC)
    # autumn: 02:30 happens twice; the runs keep moving forward and 02:30 runs once
    start = datetime(2024, 10, 27, 0, 0, tzinfo=berlin)
    [(_, times)] = next_runs([entry("30 * * * *")], start, count=4, tz=berlin)
    assert times == sorted(set(times))
    assert [t.astimezone(berlin).strftime("%H:%M") for t in times] == [
        "00:30",
        "01:30",
        "02:30",
        "03:30",
    ]
    # starting inside the repeated hour gives the second 02:30, never one already past
    inside = datetime(2024, 10, 27, 2, 10, fold=1, tzinfo=berlin)
    assert next_after("30 * * * *", inside, berlin) == datetime(2024, 10, 27, 1, 30, tzinfo=UTC)
    # spring: 02:30 does not exist; the run lands after the start, the next day is normal
    spring = datetime(2024, 3, 31, 0, 0, tzinfo=berlin)
    [(_, (a, b))] = next_runs([entry("30 2 * * *")], spring, count=2, tz=berlin)
    assert spring < a < datetime(2024, 3, 31, 4, 0, tzinfo=berlin)
    assert b == datetime(2024, 4, 1, 2, 30, tzinfo=berlin)


# -- the scheduler, on a fake clock ----------------------------------------------------------


class FakeTime:
    """A clock that the scheduler's sleep advances; parks the scheduler at ``until``."""

    def __init__(self, until: datetime, start: datetime = T0) -> None:
        self.now = start
        self.until = until
        self.parked = asyncio.Event()
        self.on_sleep: Callable[[float], None] | None = None

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds > 0
        if self.now + timedelta(seconds=seconds) > self.until:
            self.parked.set()
            await asyncio.Event().wait()
        if self.on_sleep is not None:
            self.on_sleep(seconds)
        else:
            self.now += timedelta(seconds=seconds)
        await asyncio.sleep(0)


class Recorder:
    def __init__(self, time: FakeTime, body: Callable[[CronEntry], Awaitable[None]] | None = None):
        self.time = time
        self.body = body
        self.calls: list[tuple[str | None, datetime]] = []

    async def __call__(self, entry: CronEntry) -> None:
        self.calls.append((entry.name, self.time.now))
        if self.body is not None:
            await self.body(entry)

    def times_of(self, name: str) -> list[str]:
        return [t.strftime("%M:%S") for n, t in self.calls if n == name]


async def drive(scheduler: CronScheduler, time: FakeTime) -> None:
    """Run until the fake clock reaches its end, then stop the scheduler."""
    task = asyncio.create_task(scheduler.run())
    parked = asyncio.create_task(time.parked.wait())
    await asyncio.wait([task, parked], timeout=10, return_when=asyncio.FIRST_COMPLETED)
    parked.cancel()
    assert not task.done(), task.exception()
    await scheduler.stop()
    assert task.done()


async def test_fires_each_entry_at_its_due_times() -> None:
    time = FakeTime(until=T0 + timedelta(seconds=31))
    record = Recorder(time)
    entries = [entry("*/10 * * * * *", "a"), entry("*/15 * * * * *", "b")]
    await drive(CronScheduler(entries, record, clock=time.clock, sleep=time.sleep, tz=UTC), time)
    assert record.times_of("a") == ["00:10", "00:20", "00:30"]
    assert record.times_of("b") == ["00:15", "00:30"]


async def test_five_field_schedule_fires_on_the_minute() -> None:
    time = FakeTime(until=T0 + timedelta(minutes=5, seconds=1), start=T0 + timedelta(seconds=7))
    record = Recorder(time)
    scheduler = CronScheduler(
        [entry("*/2 * * * *", "m")], record, clock=time.clock, sleep=time.sleep, tz=UTC
    )
    await drive(scheduler, time)
    assert record.times_of("m") == ["02:00", "04:00"]


async def test_entries_due_together_run_concurrently() -> None:
    gate = asyncio.Event()
    started: list[str | None] = []

    async def slow(e: CronEntry) -> None:
        started.append(e.name)
        await gate.wait()

    time = FakeTime(until=T0 + timedelta(seconds=15))
    record = Recorder(time, slow)
    entries = [entry("*/10 * * * * *", "a"), entry("*/10 * * * * *", "b")]
    scheduler = CronScheduler(entries, record, clock=time.clock, sleep=time.sleep, tz=UTC)
    task = asyncio.create_task(scheduler.run())
    await asyncio.wait_for(time.parked.wait(), 10)
    # both started while neither has finished, and the scheduler went on to sleep
    assert sorted(started) == ["a", "b"]  # type: ignore[type-var]
    assert scheduler.in_flight == 2
    gate.set()
    await scheduler.stop()
    assert task.done()
    assert scheduler.in_flight == 0


async def test_never_fires_twice_for_one_due_time() -> None:
    time = FakeTime(until=T0 + timedelta(seconds=31))
    jumped_back = False

    def early_and_backwards(seconds: float) -> None:
        nonlocal jumped_back
        # wake up early (only part of the requested delay) ...
        time.now += timedelta(seconds=max(seconds * 0.4, 0.001))
        # ... and once, right after the first run, the wall clock steps back 5 s
        if record.calls and not jumped_back:
            jumped_back = True
            time.now -= timedelta(seconds=5)

    time.on_sleep = early_and_backwards
    record = Recorder(time)
    scheduler = CronScheduler(
        [entry("*/10 * * * * *", "a")], record, clock=time.clock, sleep=time.sleep, tz=UTC
    )
    await drive(scheduler, time)
    assert jumped_back
    assert record.times_of("a") == ["00:10", "00:20", "00:30"]


async def test_missed_runs_fire_once_then_continue_from_now() -> None:
    time = FakeTime(until=T0 + timedelta(hours=1, seconds=25))
    suspended = False

    def suspend_once(seconds: float) -> None:
        nonlocal suspended
        time.now += timedelta(seconds=seconds)
        if not suspended:  # the machine sleeps for an hour during the first wait
            suspended = True
            time.now += timedelta(hours=1, seconds=3)

    time.on_sleep = suspend_once
    record = Recorder(time)
    scheduler = CronScheduler(
        [entry("*/10 * * * * *", "a")], record, clock=time.clock, sleep=time.sleep, tz=UTC
    )
    await drive(scheduler, time)
    assert [t.strftime("%H:%M:%S") for _, t in record.calls] == [
        "13:00:13",  # once, late, for the 360 missed runs
        "13:00:20",
    ]


async def test_failing_dispatch_is_logged_and_scheduler_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def explode(e: CronEntry) -> None:
        raise RuntimeError("channel is gone")

    time = FakeTime(until=T0 + timedelta(seconds=21))
    record = Recorder(time, explode)
    scheduler = CronScheduler(
        [entry("*/10 * * * * *", "backup")], record, clock=time.clock, sleep=time.sleep, tz=UTC
    )
    with caplog.at_level(logging.ERROR, logger="openpista.scheduler"):
        await drive(scheduler, time)
    assert record.times_of("backup") == ["00:10", "00:20"]
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 2
    assert "cron backup" in failures[0].getMessage()
    assert failures[0].exc_info is not None
    assert "channel is gone" in str(failures[0].exc_info[1])


async def test_disabled_entries_are_skipped() -> None:
    time = FakeTime(until=T0 + timedelta(seconds=21))
    record = Recorder(time)
    entries = [entry("*/10 * * * * *", "off", enabled=False), entry("*/10 * * * * *", "on")]
    await drive(CronScheduler(entries, record, clock=time.clock, sleep=time.sleep, tz=UTC), time)
    assert record.times_of("on") == ["00:10", "00:20"]
    assert record.times_of("off") == []


async def test_overlapping_run_of_one_entry_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    gate = asyncio.Event()

    async def first_is_slow(e: CronEntry) -> None:
        if len(record.calls) == 1:
            await gate.wait()

    time = FakeTime(until=T0 + timedelta(seconds=31))
    record = Recorder(time, first_is_slow)

    def release_after_20s(seconds: float) -> None:
        time.now += timedelta(seconds=seconds)
        if time.now >= T0 + timedelta(seconds=25):
            gate.set()

    time.on_sleep = release_after_20s
    scheduler = CronScheduler(
        [entry("*/10 * * * * *", "slow")], record, clock=time.clock, sleep=time.sleep, tz=UTC
    )
    with caplog.at_level(logging.WARNING, logger="openpista.scheduler"):
        await drive(scheduler, time)
    assert record.times_of("slow") == ["00:10", "00:30"]
    assert any("still in progress" in r.getMessage() for r in caplog.records)


async def test_no_entries_waits_until_cancelled() -> None:
    time = FakeTime(until=T0 + timedelta(days=1))
    scheduler = CronScheduler(
        [entry("* * * * *", enabled=False)], _never_called, clock=time.clock, sleep=time.sleep
    )
    task = asyncio.create_task(scheduler.run())
    for _ in range(10):
        await asyncio.sleep(0)
    assert not task.done()
    assert time.now == T0  # it never slept through the clock
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_stop_lets_a_running_dispatch_finish() -> None:
    gate = asyncio.Event()
    finished: list[bool] = []

    async def slow(e: CronEntry) -> None:
        await gate.wait()
        finished.append(True)

    time = FakeTime(until=T0 + timedelta(seconds=15))
    record = Recorder(time, slow)
    scheduler = CronScheduler(
        [entry("*/10 * * * * *", "a")], record, clock=time.clock, sleep=time.sleep, tz=UTC
    )
    task = asyncio.create_task(scheduler.run())
    await asyncio.wait_for(time.parked.wait(), 10)
    stopping = asyncio.create_task(scheduler.stop(grace=30))
    await asyncio.wait([task], timeout=10)
    assert task.done()  # no new runs start while stopping
    assert not stopping.done()
    gate.set()
    await stopping
    assert finished == [True]


async def test_stop_cancels_a_dispatch_past_the_timeout() -> None:
    cancelled: list[bool] = []

    async def hangs(e: CronEntry) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    time = FakeTime(until=T0 + timedelta(seconds=15))
    scheduler = CronScheduler(
        [entry("*/10 * * * * *", "a")],
        Recorder(time, hangs),
        clock=time.clock,
        sleep=time.sleep,
        tz=UTC,
    )
    task = asyncio.create_task(scheduler.run())
    await asyncio.wait_for(time.parked.wait(), 10)
    assert scheduler.in_flight == 1
    await scheduler.stop(grace=0)
    assert task.done()
    assert cancelled == [True]
    assert scheduler.in_flight == 0


async def test_cancelling_run_cancels_running_dispatches() -> None:
    cancelled: list[bool] = []

    async def hangs(e: CronEntry) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    time = FakeTime(until=T0 + timedelta(seconds=15))
    scheduler = CronScheduler(
        [entry("*/10 * * * * *")], Recorder(time, hangs), clock=time.clock, sleep=time.sleep
    )
    task = asyncio.create_task(scheduler.run())
    await asyncio.wait_for(time.parked.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled == [True]


async def test_real_clock_every_second() -> None:
    fired: list[datetime] = []
    two = asyncio.Event()

    async def dispatch(e: CronEntry) -> None:
        fired.append(datetime.now(UTC))
        if len(fired) >= 2:
            two.set()

    scheduler = CronScheduler([entry("* * * * * *", "tick")], dispatch)
    task = asyncio.create_task(scheduler.run())
    try:
        await asyncio.wait_for(two.wait(), 5)
    finally:
        await scheduler.stop()
    assert task.done()
    assert fired[0] < fired[1]


# -- openpista cron list ----------------------------------------------------------------------

CONFIG = """
[[cron]]
name = "morning-report"
schedule = "0 8 * * mon-fri"
channel = "telegram:123456789"
message = "Summarize the disk usage and failed systemd units, then list odd lines in the journal."

[[cron]]
schedule = "*/30 * * * * *"
channel = "cli:local"
message = "ping"
enabled = false
"""


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "config.toml"
    monkeypatch.setenv("OPENPISTA_CONFIG", str(path))
    return path


def test_cli_list(config_file: Path) -> None:
    config_file.write_text(CONFIG)
    result = CliRunner().invoke(cli, ["cron", "list", "-n", "2"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "morning-report  [0 8 * * mon-fri]  -> telegram:123456789" in out
    assert "#1  [*/30 * * * * *]  -> cli:local  (disabled)" in out
    assert "message: Summarize the disk usage" in out
    assert "journal." not in out  # clipped
    assert out.count("next run: ") == 2
    assert out.count("would run: ") == 2


def test_cli_list_json(config_file: Path) -> None:
    config_file.write_text(CONFIG)
    result = CliRunner().invoke(cli, ["cron", "list", "--json", "--count", "3"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["morning-report", None]
    assert rows[0]["message"].endswith("journal.")  # never clipped in JSON
    assert rows[1]["enabled"] is False
    times = [datetime.fromisoformat(t) for t in rows[0]["next_runs"]]
    assert len(times) == 3
    assert times == sorted(times)
    assert all(t.tzinfo is not None and t.astimezone().hour == 8 for t in times)


def test_cli_list_invalid_schedule(config_file: Path) -> None:
    config_file.write_text(
        '[[cron]]\nname = "bad"\nschedule = "61 * * * *"\nchannel = "cli:x"\nmessage = "m"\n'
    )
    result = CliRunner().invoke(cli, ["cron", "list"])
    assert result.exit_code == 1
    assert result.stderr.startswith("❌ ")
    assert f"{config_file}: cron[0] (name 'bad'): invalid schedule '61 * * * *'" in result.stderr


def test_cli_list_without_entries(config_file: Path) -> None:
    config_file.write_text("")
    result = CliRunner().invoke(cli, ["cron", "list"])
    assert result.exit_code == 0, result.output
    assert "No scheduled messages" in result.stdout
    assert "config.example.toml" in result.stdout
    result = CliRunner().invoke(cli, ["cron", "list", "--json"])
    assert json.loads(result.stdout) == []
