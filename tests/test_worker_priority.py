"""A local worker's own thread yields to its digest lanes (``examkit.worker.settle``)."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from examkit import hashing
from examkit.executors import local_executor
from examkit.worker import NICENESS_ENV, READER_NICENESS, settle

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="a thread has a niceness of its own on Linux"
)


def priorities() -> tuple[int, list[int]]:
    """The calling thread's niceness and its digest lanes' (run in a worker, or a thread)."""
    lanes = getattr(hashing._local, "lanes", None) or []
    return (
        os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
        [os.getpriority(os.PRIO_PROCESS, lane.thread.native_id) for lane in lanes],
    )


def _settled_thread() -> tuple[int, list[int]]:
    out: list[tuple[int, list[int]]] = []
    thread = threading.Thread(target=lambda: (settle(), out.append(priorities())))
    thread.start()
    thread.join(30)
    return out[0]


def test_a_pool_worker_runs_below_its_lanes() -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)  # what the pool's processes inherit
    executor = local_executor(1)
    try:
        own, lanes = executor.submit(priorities).result(60)
    finally:
        executor.shutdown(wait=True)
    assert own == min(19, base + READER_NICENESS)
    assert lanes and lanes == [base] * len(lanes)  # started before the thread was lowered


def test_settle_lowers_only_the_calling_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NICENESS_ENV, raising=False)
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    own, lanes = _settled_thread()
    assert own == min(19, base + READER_NICENESS)
    assert lanes == [base] * len(lanes) and len(lanes) >= 1
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base


def test_settle_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NICENESS_ENV, "0")
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    own, lanes = _settled_thread()
    assert (own, lanes) == (base, [])
