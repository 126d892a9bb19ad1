"""The TUI's worker dashboard: opened by ``w`` or ``/worker``, its rows, its way back, and
the effect that reads a real worker log."""

from __future__ import annotations

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
    WorkerRow,
    WorkersLoaded,
)
from openpista.tui.update import update

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
