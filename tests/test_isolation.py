"""Crash and hang isolation: a worker that dies or hangs costs one file, never the run."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from examkit.isolation import SHORT_BYTES, IsolatedPool, WorkerDied, WorkerStalled, heartbeat
from tests.conftest import file_rows

EXAMKIT = str(Path(sys.executable).with_name("examkit"))


# jobs run in the pool's worker processes (imported there by reference)
def square(x: int) -> int:
    return x * x


def crash(_x: int) -> int:
    os.kill(os.getpid(), signal.SIGSEGV)
    return 0


def hang(_x: int) -> int:
    time.sleep(3600)  # no heartbeat: looks like a loop inside C code
    return 0


def slow_but_alive(seconds: float) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        heartbeat()
        time.sleep(0.05)
    return "done"


def fail(_x: int) -> int:
    raise ValueError("an ordinary error")


def pid(_x: int) -> int:
    return os.getpid()


def slow_to_stop(log: str) -> int:
    """Make this worker's exit take 0.3 s, writing when it starts and ends."""
    from multiprocessing import util

    def stopping() -> None:
        with open(log, "a") as out:
            out.write(f"start {os.getpid()}\n")
        time.sleep(0.3)
        with open(log, "a") as out:
            out.write(f"end {os.getpid()}\n")

    util.Finalize(None, stopping, exitpriority=10)  # run as the worker process ends
    time.sleep(0.3)  # busy long enough that the other job goes to the other worker
    return os.getpid()


@pytest.fixture
def pool() -> IsolatedPool:
    executor = IsolatedPool(2, multiprocessing.get_context("forkserver"), stall_seconds=1.0)
    yield executor
    executor.shutdown(wait=False, cancel_futures=True)


def test_a_crash_fails_only_its_job_and_the_pool_goes_on(pool: IsolatedPool) -> None:
    crashed = pool.submit(crash, 1)
    others = [pool.submit(square, n) for n in range(20)]
    with pytest.raises(WorkerDied, match="SIGSEGV"):
        crashed.result(30)
    assert [f.result(30) for f in others] == [n * n for n in range(20)]
    assert pool.submit(square, 7).result(30) == 49  # a fresh worker took its place
    assert pool.crashes == 1


def test_a_hang_is_stopped_and_progress_is_not_a_hang(pool: IsolatedPool) -> None:
    started = time.monotonic()
    hung = pool.submit(hang, 1)
    alive = pool.submit(slow_but_alive, 2.5)  # longer than the stall limit, but beating
    with pytest.raises(WorkerStalled, match="no progress for 1 s"):
        hung.result(30)
    assert time.monotonic() - started < 10
    assert alive.result(30) == "done"
    assert pool.submit(square, 3).result(30) == 9


def sleep_then_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def crash_after(seconds: float) -> int:
    time.sleep(seconds)
    os.kill(os.getpid(), signal.SIGSEGV)
    return 0


def _held(pool: IsolatedPool, want: list[int], timeout: float = 20.0) -> list[int]:
    """How many jobs each worker holds, once it is ``want`` (or the timeout)."""
    end = time.monotonic() + timeout
    while True:
        with pool._lock:
            held = sorted(len(w.jobs) for w in pool._pool)
        if held == want or time.monotonic() > end:
            return held
        time.sleep(0.01)


def test_a_short_job_waits_in_a_worker_behind_a_short_one() -> None:
    """A worker running a short job is sent the next one (it waits in the worker's pipe and
    starts without a round trip through the pool); the results come back in order, each
    from the worker that ran it."""
    pool = IsolatedPool(1, multiprocessing.get_context("forkserver"))
    try:
        jobs = [pool.submit_short(sleep_then_pid, 0.4) for _ in range(3)]
        assert _held(pool, [2]) == [2]  # one running, one waiting; the third in the queue
        with pool._lock:
            assert len(pool._queue) == 1
        pids = [job.result(30) for job in jobs]
        assert len(set(pids)) == 1
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def test_nothing_waits_behind_a_job_that_is_not_short() -> None:
    """A listing (or any job given with ``submit``) holds its worker alone: a short job
    queues in the pool instead of waiting seconds behind it in that worker."""
    pool = IsolatedPool(1, multiprocessing.get_context("forkserver"))
    try:
        long = pool.submit(sleep_then_pid, 0.6)
        short = pool.submit_short(square, 5)
        assert _held(pool, [1]) == [1]
        time.sleep(0.2)
        assert _held(pool, [1], 0) == [1]
        with pool._lock:
            assert len(pool._queue) == 1
        assert long.result(30) > 0 and short.result(30) == 25
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def length(data: bytes) -> int:
    return len(data)


def test_a_large_short_job_is_not_sent_ahead() -> None:
    """A job waiting in a worker's pipe fills the pipe's buffer: one of more than
    SHORT_BYTES waits in the pool until the worker is idle (a send that blocked would hold
    the pool's thread, which also watches for hangs). A job that does not pickle fails
    alone."""
    pool = IsolatedPool(1, multiprocessing.get_context("forkserver"))
    try:
        first = pool.submit_short(sleep_then_pid, 0.5)
        big = pool.submit_short(length, b"x" * (SHORT_BYTES + 1))
        assert _held(pool, [1]) == [1]
        time.sleep(0.2)
        assert _held(pool, [1], 0) == [1]  # not sent ahead
        assert first.result(30) > 0 and big.result(30) == SHORT_BYTES + 1
        unpicklable = pool.submit_short(length, threading.Lock())
        with pytest.raises(TypeError):
            unpicklable.result(30)
        assert pool.submit_short(square, 4).result(30) == 16
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def test_a_crash_fails_the_running_short_job_and_reruns_the_one_behind_it() -> None:
    """The job that was waiting in a worker that died never started: it goes back to the
    queue and a fresh worker runs it; only the running one fails."""
    pool = IsolatedPool(1, multiprocessing.get_context("forkserver"))
    try:
        crashed = pool.submit_short(crash_after, 0.4)
        behind = pool.submit_short(sleep_then_pid, 0.0)
        assert _held(pool, [2]) == [2]
        with pytest.raises(WorkerDied, match="SIGSEGV"):
            crashed.result(30)
        assert behind.result(30) > 0
        assert pool.crashes == 1
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def test_ordinary_exceptions_come_back_and_the_worker_lives(pool: IsolatedPool) -> None:
    with pytest.raises(ValueError, match="an ordinary error"):
        pool.submit(fail, 1).result(30)
    assert pool.submit(square, 4).result(30) == 16
    assert pool.crashes == 0


# A scan whose workers crash on one file and hang on another. The fault is injected in the
# worker processes only, through a sitecustomize module every Python process imports.
SITECUSTOMIZE = """
import os, signal, time
targets = os.environ.get("EXAMKIT_TEST_FAULTS")
if targets:
    faults = dict(item.split("=") for item in targets.split(","))
    import examkit.worker as worker
    original = worker.hash_unit
    def hash_unit(unit):
        for task in unit.tasks:
            fault = faults.get(task.name)
            if fault == "crash":
                os.kill(os.getpid(), signal.SIGSEGV)
            if fault == "hang":
                time.sleep(3600)
        return original(unit)
    worker.hash_unit = hash_unit
"""


def test_a_large_job_does_not_wait_behind_small_ones() -> None:
    pool = IsolatedPool(1, multiprocessing.get_context("forkserver"), reserved=1)
    try:
        busy = pool.submit(slow_but_alive, 3.0)  # the one ordinary worker
        time.sleep(0.2)
        small = pool.submit(pid, 0)
        started = time.monotonic()
        large = pool.submit_large(pid, 0)  # goes to the reserved worker at once
        reserved_pid = large.result(30)
        assert time.monotonic() - started < 2.5 and not busy.done() and not small.done()
        assert small.result(30) != reserved_pid  # a small job never goes to the reserved one
        assert busy.result(30) == "done"
        # with the reserved worker busy, a large job takes an idle ordinary worker
        again = pool.submit_large(slow_but_alive, 1.0)
        time.sleep(0.2)
        assert pool.submit_large(pid, 0).result(30) != reserved_pid
        assert again.result(30) == "done"
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def test_a_stopping_pool_stops_its_workers_together(tmp_path: Path) -> None:
    """Every worker is told to stop before the pool waits for any: their exits overlap."""
    log = tmp_path / "stops.log"
    pool = IsolatedPool(2, multiprocessing.get_context("forkserver"))
    jobs = [pool.submit(slow_to_stop, str(log)) for _ in range(2)]
    assert len({job.result(30) for job in jobs}) == 2
    pool.shutdown(wait=True)
    lines = [line.split()[0] for line in log.read_text().splitlines()]
    assert lines == ["start", "start", "end", "end"], lines


def _scan(image: Path, case: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXAMKIT, "scan", str(image), "--case", str(case), "--json", "--workers", "2",
         "--stall-timeout", "2", "--no-verify", "--no-perceptual"],
        capture_output=True, text=True, env=env, timeout=180, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_a_file_that_kills_or_hangs_its_worker_is_an_error_and_the_scan_goes_on(
    fixture_images: Path, tmp_path: Path
) -> None:
    image = fixture_images / "ext4.raw"
    plain_case, faulty_case = tmp_path / "plain.sqlite", tmp_path / "faulty.sqlite"
    env = dict(os.environ)
    env.pop("EXAMKIT_TEST_FAULTS", None)
    assert _scan(image, plain_case, env).returncode == 0
    conn = sqlite3.connect(plain_case)
    names = [r[0] for r in conn.execute(
        "SELECT name FROM files WHERE status = 'ok' AND size > 0 ORDER BY file_id")]  # fmt: skip
    conn.close()
    crash_name, hang_name = names[3], names[-2]
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "site"), env.get("PYTHONPATH", "")])
    env["EXAMKIT_TEST_FAULTS"] = f"{crash_name}=crash,{hang_name}=hang"
    started = time.monotonic()
    done = _scan(image, faulty_case, env)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 120
    assert json.loads(done.stdout)["status"] == "complete"
    conn = sqlite3.connect(faulty_case)
    errors = dict(conn.execute("SELECT name, error FROM files WHERE status = 'error'"))
    conn.close()
    assert set(errors) == {crash_name, hang_name}
    assert "killed by SIGSEGV while reading this file" in errors[crash_name]
    assert "no progress for 2 s" in errors[hang_name]
    # every other row is exactly what the undisturbed scan recorded
    skip = {"file_id", "evidence_id", "run_id", "volume_id", "filesystem_id"}

    def others(case: Path) -> list[dict[str, object]]:
        return [{k: v for k, v in row.items() if k not in skip}
                for row in file_rows(case) if row["name"] not in errors]  # fmt: skip

    assert others(plain_case) == others(faulty_case)


LISTING_FAULTS = """
import os, signal, time
targets = os.environ.get("EXAMKIT_TEST_LISTING_FAULTS")
if targets:
    faults = dict(item.split("=") for item in targets.split(","))
    import examkit.worker as worker
    original = worker.list_evidence
    def list_evidence(case_path, evidence_id, container, paths, *rest):
        fault = faults.get(evidence_id)
        if fault == "crash":
            os.kill(os.getpid(), signal.SIGABRT)
        if fault == "hang":
            time.sleep(3600)
        return original(case_path, evidence_id, container, paths, *rest)
    worker.list_evidence = list_evidence
"""


def test_a_listing_that_crashes_or_hangs_fails_only_its_evidence(
    fixture_images: Path, tmp_path: Path
) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(textwrap.dedent(LISTING_FAULTS))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "site"), env.get("PYTHONPATH", "")])
    env["EXAMKIT_TEST_LISTING_FAULTS"] = "fat16=crash,exfat=hang"
    images = [fixture_images / n for n in ("fat16.raw", "ext4.raw", "exfat.raw")]
    case = tmp_path / "case.sqlite"
    done = subprocess.run(
        [EXAMKIT, "scan", *map(str, images), "--case", str(case), "--json", "--workers", "2",
         "--stall-timeout", "2", "--no-verify", "--no-perceptual"],
        capture_output=True, text=True, env=env, timeout=180, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # items failed; the parent did not
    assert "Traceback" not in done.stderr
    summary = json.loads(done.stdout)
    failures = dict(f.split(": ", 1) for f in summary["failures"])
    assert set(failures) == {"fat16", "exfat"}
    assert "killed by SIGABRT" in failures["fat16"]
    assert "no progress for 2 s" in failures["exfat"]
    conn = sqlite3.connect(case)
    status = dict(conn.execute("SELECT evidence_id, scan_status FROM evidence"))
    conn.close()
    assert status == {"fat16": "failed", "ext4": "complete", "exfat": "failed"}
