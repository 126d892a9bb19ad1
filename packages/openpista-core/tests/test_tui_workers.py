"""The TUI's worker dashboard: opened by ``w`` or ``/worker``, its rows, its way back, and
the effect that reads a real worker log."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from openpista.memory import WorkerLog
from openpista.memory.worker_reports import token_digest
from openpista.tui import view
from openpista.tui.effects import EffectRunner
from openpista.tui.state import (
    Action,
    Effect,
    Failed,
    LeaveWorkers,
    LoadHome,
    LoadWorkers,
    MoveSelection,
    ShowWorkers,
    State,
    Submit,
    WorkerEventReceived,
    WorkerRow,
    WorkersLoaded,
)
from openpista.tui.update import update
from openpista.worker_service import worker_feed
from openpista_testing.polling import eventually

ROWS = (
    WorkerRow("aaaa", "running", percent=40, logs=("step 1", "step 2")),
    WorkerRow("bbbb", "finished", duration=2.5, exit_code=0, channel_id="telegram:42"),
    WorkerRow("cccc", "failed", duration=1.0, exit_code=3, logs=("boom",)),
)


def run(state: State, *actions: Action) -> tuple[State, list[Effect]]:
    effects: list[Effect] = []
    for action in actions:
        state, new = update(state, action)
        effects += new
    return state, effects


def text(state: State) -> str:
    return "".join(fragment[1] for fragment in view.workers(state))


def test_w_on_home_and_worker_in_a_chat_open_the_dashboard_and_escape_goes_back() -> None:
    home, effects = run(State(), ShowWorkers())
    assert (home.screen, effects) == ("workers", [LoadWorkers()])
    back, effects = run(home, LeaveWorkers())
    assert (back.screen, effects) == ("home", [LoadHome()])

    chat = State(screen="chat", session_id="s1", commands=("help",))
    shown, effects = run(chat, Submit("/worker"))
    assert (shown.screen, effects) == ("workers", [LoadWorkers()])
    back, effects = run(shown, LeaveWorkers())
    assert (back.screen, back.session_id, effects) == ("chat", "s1", [])
    assert run(chat, LeaveWorkers())[0] == chat  # not on the dashboard: nothing happens


def test_the_dashboard_groups_runs_and_shows_the_selected_one_s_logs() -> None:
    state, _ = run(State(), ShowWorkers(), WorkersLoaded(ROWS))
    shown = text(state)
    assert shown.index("Active (1)") < shown.index("aaaa") < shown.index("Completed (1)")
    assert shown.index("Completed (1)") < shown.index("bbbb") < shown.index("Failed (1)")
    assert shown.index("Failed (1)") < shown.index("cccc")
    assert "aaaa  running   40%  exit -" in shown
    assert "2.5 s  exit 0  telegram:42" in shown
    assert "exit 3" in shown
    assert "      step 1\n      step 2\n" in shown
    assert "boom" not in shown  # only the selected run's log
    moved, _ = run(state, MoveSelection(5))
    assert moved.worker_selected == 2
    assert "      boom\n" in text(moved)
    assert run(moved, MoveSelection(-9))[0].worker_selected == 0
    # A reload keeps the cursor on its run, or on a row when the run is gone.
    newer = (WorkerRow("dddd", "finished", duration=1.0), *ROWS)
    assert run(moved, WorkersLoaded(newer))[0].worker_selected == 3
    assert run(moved, WorkersLoaded(ROWS[:1]))[0].worker_selected == 0
    # Up and down follow the screen's order, whatever order the runs came in.
    mixed, _ = run(State(), ShowWorkers(), WorkersLoaded(tuple(reversed(ROWS))))
    assert [row.task_id for row in mixed.workers] == ["aaaa", "bbbb", "cccc"]
    assert "No worker tasks yet" in text(run(State(), ShowWorkers(), WorkersLoaded(()))[0])
    assert "workers" in "".join(f[1] for f in view.header(state))
    assert "Esc back" in "".join(f[1] for f in view.toolbar(state))


async def test_the_dashboard_reads_the_worker_log_with_the_log_lines(tmp_path: Path) -> None:
    worker_log = await WorkerLog.open(f"sqlite+aiosqlite:///{tmp_path}/memory.db")
    now = datetime.now(UTC)
    task = {
        "task_id": "t1",
        "session_id": "s1",
        "channel_id": "cli:local",
        "token_sha256": token_digest("x"),
        "created_at": now,
        "expires_at": now + timedelta(minutes=5),
    }
    body: dict[str, Any] = {"v": 1, "task_id": "t1", "report_id": "1", "kind": "progress"}
    await worker_log.store_report(task, {**body, "log": ["a", "b"], "percent": 5}, now)
    actions: list[Action] = []
    runner = EffectRunner(None, None, actions.append, "tester", lambda: None)  # type: ignore[arg-type]
    await runner.run(LoadWorkers())
    assert actions == [Failed("the worker history is not available here")]
    runner.worker_log = worker_log
    await runner.run(LoadWorkers())
    loaded = actions[-1]
    assert isinstance(loaded, WorkersLoaded)
    (row,) = loaded.workers
    assert replace(row, created="") == WorkerRow(
        "t1", "running", "", None, None, "cli:local", 5, ("a", "b")
    )
    await worker_log.close()


def local(at: str) -> str:
    return datetime.fromisoformat(at).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def test_the_dashboard_follows_the_feed_without_reading_again() -> None:
    state, _ = run(State(), ShowWorkers(), WorkersLoaded(ROWS))
    at, later = "2026-12-03T10:00:00+00:00", "2026-12-03T10:00:04+00:00"
    events: list[dict[str, Any]] = [
        {"event": "created", "task_id": "eeee", "channel_id": "web:alice", "at": at},
        {"event": "started", "task_id": "eeee", "at": at, "log": [], "percent": None},
        {"event": "progress", "task_id": "eeee", "at": at, "log": ["half"], "percent": 50},
        {"event": "progress", "task_id": "aaaa", "at": at, "log": ["step 3"], "percent": 90},
        {"event": "finished", "task_id": "eeee", "at": later, "exit_code": 0, "log": []},
        {"event": "ended", "task_id": "eeee", "at": later},  # after its final report
        {"event": "ended", "task_id": "zzzz", "at": at},  # a task never seen: nothing
        {"event": "progress", "task_id": 5, "log": ["x"]},  # not a task id: nothing
        {"event": "progress", "task_id": "aaaa", "log": "not a list", "at": "never"},
    ]
    followed, effects = run(state, *(WorkerEventReceived(event) for event in events))
    assert effects == []  # nothing is read again
    rows = {row.task_id: row for row in followed.workers}
    assert rows["eeee"] == WorkerRow(
        "eeee", "finished", local(at), 4.0, 0, "web:alice", 50, ("half",)
    )
    assert (rows["aaaa"].status, rows["aaaa"].percent) == ("running", 90)
    assert rows["aaaa"].logs == ("step 1", "step 2", "step 3")
    assert "zzzz" not in rows
    shown = text(followed)
    assert "Completed (2)" in shown
    assert re.search(r"eeee\s+finished\s+4\.0 s\s+exit 0\s+web:alice", shown), shown
    # A running task whose credential ends without a final report is failed ("ended").
    ended, _ = run(followed, WorkerEventReceived({"event": "ended", "task_id": "aaaa"}))
    assert [row.task_id for row in ended.workers if row.status == "ended"] == ["aaaa"]
    assert "Failed (2)" in text(ended)


async def test_the_local_dashboard_follows_this_process_s_feed(tmp_path: Path) -> None:
    worker_log = await WorkerLog.open(f"sqlite+aiosqlite:///{tmp_path}/memory.db")
    actions: list[Action] = []
    runner = EffectRunner(None, None, actions.append, "tester", lambda: None)  # type: ignore[arg-type]
    runner.worker_log = worker_log
    try:
        await runner.run(LoadWorkers())
        await runner.run(LoadWorkers())  # shown again: still one subscription
        assert actions == [WorkersLoaded(()), WorkersLoaded(())]
        event = {"v": 1, "event": "progress", "task_id": "t1", "log": ["live"], "percent": 7}
        worker_feed().publish(event)
        await eventually(lambda: len(actions) > 2)
        assert actions[2:] == [WorkerEventReceived(event)]
    finally:
        await runner.close()
        await worker_log.close()
    worker_feed().publish({**event, "log": ["after close"]})
    await asyncio.sleep(0)  # a subscriber left would be handed it now
    assert len(actions) == 3
