"""The cyclic garbage collector paused while a process starts (openpista.collector)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from openpista import collector


@pytest.fixture(autouse=True)
def collector_state() -> Iterator[None]:
    was_enabled = gc.isenabled()
    yield
    collector.resume()
    gc.unfreeze()
    (gc.enable if was_enabled else gc.disable)()


def test_pause_then_resume_freezes_what_start_up_built_and_collects_again() -> None:
    gc.enable()
    gc.unfreeze()
    collector.pause()
    assert not gc.isenabled()
    built = [[object()] for _ in range(1000)]
    collector.resume()
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(built)  # never walked again by a collection
    collector.resume()  # a second resume changes nothing
    assert gc.isenabled()


def test_a_collector_turned_off_by_someone_else_stays_off() -> None:
    gc.disable()
    frozen = gc.get_freeze_count()
    collector.pause()
    collector.resume()
    assert not gc.isenabled()
    assert gc.get_freeze_count() == frozen


def test_cycles_made_after_resume_are_collected() -> None:
    gc.enable()
    collector.pause()
    collector.resume()

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2
