"""A large stream's reader is kept off the cores its digest lanes run on, and given its
own affinity back when the stream ends (``examkit.placement``)."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from examkit import hashing, placement
from examkit.hashing import CHUNK_SIZE, StreamDigest, hash_stream
from examkit.plugins import registry

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
    reason="CPU affinity of threads, on Linux with two cores or more",
)


def in_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a new thread (its affinity, and this module's state for it, are its
    own: the test runner's thread is never changed) and return what it returns."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # re-raised in the test
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.fixture(autouse=True)
def enabled(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(placement.PLACEMENT_ENV, raising=False)
    monkeypatch.setattr(placement, "_enabled", None)
    yield


class Spinner:
    """A thread that runs on one given core until stopped."""

    def __init__(self, cpu: int) -> None:
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.tid = 0
        self.thread = threading.Thread(target=self._run, args=(cpu,), daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self, cpu: int) -> None:
        os.sched_setaffinity(0, {cpu})
        self.tid = threading.get_native_id()
        self.ready.set()
        while not self.stop.wait(0.001):
            pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def test_the_core_a_thread_runs_on_is_read_from_proc() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    spinner = Spinner(cpus[-1])
    try:
        assert placement.cpu_of(spinner.tid) == cpus[-1]
    finally:
        spinner.close()
    assert placement.cpu_of(threading.get_native_id()) in cpus
    assert placement.cpu_of(2**31 - 1) is None  # no such thread


def test_the_reader_leaves_out_the_lanes_core_until_released() -> None:
    own = frozenset(os.sched_getaffinity(0))
    cpu = max(own)
    spinner = Spinner(cpu)

    def reader() -> tuple[frozenset[int], ...]:
        placement.keep_off([spinner.tid])
        during = frozenset(os.sched_getaffinity(0))
        placement.keep_off([spinner.tid])  # again, as at each chunk: nothing more changes
        again = frozenset(os.sched_getaffinity(0))
        placement.release()
        after = frozenset(os.sched_getaffinity(0))
        placement.release()  # a second release (the worker's, after the unit) is harmless
        return during, again, after, frozenset(os.sched_getaffinity(0))

    try:
        during, again, after, later = in_thread(reader)
    finally:
        spinner.close()
    assert during == again == own - {cpu}
    assert after == later == own


def test_no_core_left_means_no_change() -> None:
    cpu = max(os.sched_getaffinity(0))
    spinner = Spinner(cpu)

    def reader() -> frozenset[int]:
        os.sched_setaffinity(0, {cpu})  # this thread may use the lane's core only
        placement.keep_off([spinner.tid])
        try:
            return frozenset(os.sched_getaffinity(0))
        finally:
            placement.release()

    try:
        assert in_thread(reader) == {cpu}
    finally:
        spinner.close()


def test_switched_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(placement.PLACEMENT_ENV, "0")
    own = frozenset(os.sched_getaffinity(0))
    spinner = Spinner(max(own))

    def reader() -> frozenset[int]:
        placement.keep_off([spinner.tid])
        return frozenset(os.sched_getaffinity(0))

    try:
        assert in_thread(reader) == own
    finally:
        spinner.close()
    assert placement.enabled() is False


def test_a_large_stream_is_read_off_its_lanes_core_and_its_digests_are_unchanged() -> None:
    """Through ``StreamDigest``: while a stream's large chunks go to its lane, its reader
    may not use the core that lane is on; once its digests are read, it may again."""
    own = frozenset(os.sched_getaffinity(0))
    cpu = max(own)
    hashers = registry().hashers
    chunks = [bytes([n]) * CHUNK_SIZE for n in range(3)]

    def reader() -> tuple[list[frozenset[int]], dict[str, str], frozenset[int]]:
        lanes = hashing._lanes_for(1 if hashing.native_triple()[0] else len(hashers))
        for lane in lanes:  # the lanes run on one known core (once woken: a job each)
            os.sched_setaffinity(lane.tid, {cpu})
            woken = hashing._Chunk(1)
            lane.queue.put((hashlib.md5(), b"", woken))
            woken.wait()
            assert placement.cpu_of(lane.tid) == cpu
        try:
            digest = StreamDigest(hashers)
            seen = []
            for chunk in chunks:
                digest.update(chunk)
                seen.append(frozenset(os.sched_getaffinity(0)))
            digests = digest.hexdigests()
            return seen, digests, frozenset(os.sched_getaffinity(0))
        finally:
            for lane in lanes:
                os.sched_setaffinity(lane.tid, own)

    seen, digests, after = in_thread(reader)
    # with the one pass, the first chunk is hashed by the reader itself (one digest, and
    # nothing read ahead yet); every chunk that goes to lanes keeps the reader off them
    one_pass = hashing.native_triple()[0] is not None
    assert seen == [own if one_pass else own - {cpu}] + [own - {cpu}] * 2
    assert after == own
    plain = in_thread(lambda: hash_stream(chunks, hashers).hexdigests())
    assert digests == plain
    assert digests["md5"] == hashlib.md5(b"".join(chunks)).hexdigest()
