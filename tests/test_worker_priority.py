"""A local worker runs its units of small streams at a lower priority than everything else
it does (``examkit.worker.settle``)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator

import pytest

from examkit import worker
from examkit.executors import local_executor
from examkit.models import StreamResult, StreamTask, WorkUnit
from examkit.worker import NICENESS_ENV, READER_NICENESS, hash_unit, settle

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="a thread has a niceness of its own on Linux"
)


def _niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def priorities() -> tuple[int, int | None]:
    """The worker's own thread's niceness and its small units' thread's (run in a worker)."""
    lowered = worker._lowered
    return _niceness(), lowered.submit(_niceness).result() if lowered else None


def _unit(streams: int) -> WorkUnit:
    tasks = tuple(StreamTask(n, "tsk", 0, 100 + n, None, None, 10, f"f{n}") for n in range(streams))
    return WorkUnit("raw", ("/nonexistent.raw",), tasks)


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """``settle`` run in this process; yields the niceness each unit was hashed at."""
    seen: list[int] = []

    def recorder(unit: WorkUnit) -> list[StreamResult]:
        seen.append(_niceness())
        return [StreamResult(t.file_id, "ok", 0) for t in unit.tasks]

    monkeypatch.setattr(worker, "_hash_unit", recorder)
    monkeypatch.setattr(worker, "_lowered", None)
    yield seen
    if worker._lowered is not None:
        worker._lowered.shutdown(wait=True)


def test_a_pool_worker_lowers_its_small_units_thread_only() -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)  # what the pool's processes inherit
    executor = local_executor(1)
    try:
        own, small = executor.submit(priorities).result(60)
    finally:
        executor.shutdown(wait=True)
    assert own == base  # the listing, a large file, the media's verification
    assert small == min(19, base + READER_NICENESS)


def test_units_of_several_streams_run_lowered(
    settled: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(NICENESS_ENV, raising=False)
    base = _niceness()
    settle()
    assert [r.file_id for r in hash_unit(_unit(3))] == [0, 1, 2]  # results come back
    hash_unit(_unit(1))  # a stream of its own: not lowered
    assert settled == [min(19, base + READER_NICENESS), base]
    assert _niceness() == base


def test_the_listing_runs_lowered(settled: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NICENESS_ENV, raising=False)
    monkeypatch.setattr(worker, "_list_evidence", lambda *args: settled.append(_niceness()) or 7)
    base = _niceness()
    settle()
    assert worker.list_evidence("case.sqlite", "item", "raw", ("/nonexistent.raw",)) == 7
    assert settled == [min(19, base + READER_NICENESS)]


def test_settle_can_be_switched_off(settled: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NICENESS_ENV, "0")
    base = _niceness()
    settle()
    assert worker._lowered is None
    hash_unit(_unit(3))
    assert settled == [base]
