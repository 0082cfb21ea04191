"""A process pool that survives its workers: a crash or a hang costs one job, not the run.

``concurrent.futures.ProcessPoolExecutor`` breaks for good when one worker
dies (``BrokenProcessPool`` for every job in flight). Evidence is hostile: The
Sleuth Kit can crash (SIGSEGV, abort) or loop forever in C on a corrupt
structure. :class:`IsolatedPool` therefore runs each job in a worker of its
own choosing and watches it:

- a worker that dies fails only the job it was running, with
  :class:`WorkerDied` (exit code or signal); a fresh worker takes its place;
- a worker that sends no sign of life for ``stall_seconds`` is killed and
  its job fails with :class:`WorkerStalled`. Jobs call :func:`heartbeat`
  between chunks (cheap: at most five messages a second), so a long but
  progressing job never times out, and a job stuck inside C code does.

The parent decides what to do with a failed job (``examkit.scan`` retries a
unit file by file and records a file that still kills its worker as
``error``). Workers ignore SIGINT: the parent alone handles Ctrl-C.

A job given with ``submit_short`` (a unit of small files: tens of milliseconds) may be
sent to a worker that is running another such job, to wait in its pipe: the worker
starts it as soon as it has sent the first one's result, instead of waiting a round trip
through this process for it (2-4 ms a job: in a scan of 100,000 small files, 1.0 s of
its two workers' 8.5). A worker that dies or hangs fails only the job it was running;
the ones waiting behind it go back to the queue, as if never sent. A job given with
``submit`` (a listing, a retried file) or ``submit_large`` has its worker to itself.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import ForkingPickler
from typing import Any, NamedTuple

from . import stackdump

HEARTBEAT_EVERY = 0.2  # seconds between a worker's signs of life, at most
SHORT_DEPTH = 2  # short jobs a worker holds at once: the one it runs and one waiting
# A job waiting in a worker's pipe is as many bytes in the pipe's buffer (a socket pair:
# ~200 KiB here): one larger than this is not sent ahead (a send that blocked until the
# worker ended its current job would hold the pool's thread, which also watches for hangs)
SHORT_BYTES = 32 * 1024
STALL_SECONDS = 300.0  # default: a job silent this long is killed
SHUTDOWN_SECONDS = 10.0  # at most this long for the pool thread to stop its workers

_conn: Connection | None = None  # in a worker: where heartbeats go
_last_beat = 0.0


class WorkerDied(Exception):
    """The worker running the job exited or was killed by a signal."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WorkerStalled(WorkerDied):
    """The worker running the job showed no progress for too long and was killed."""


def heartbeat() -> None:
    """Tell the parent this worker is making progress (no-op outside an isolated worker)."""
    global _last_beat
    if _conn is None:
        return
    now = time.monotonic()
    if now - _last_beat >= HEARTBEAT_EVERY:
        _last_beat = now
        _conn.send(("beat", None))


def _worker_main(
    conn: Connection, preload: tuple[str, ...], initializer: Callable[[], None] | None = None
) -> None:
    global _conn
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stackdump.on_signal()
    for module in preload:
        __import__(module)
    if initializer is not None:
        initializer()
    _conn = conn
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        fn, args = job
        try:
            result = ("ok", fn(*args))
        except BaseException as exc:  # sent back; the worker lives on
            result = ("error", exc)
        try:
            conn.send(result)
        except Exception as exc:  # the result or exception does not pickle
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))


class _Job(NamedTuple):
    future: Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    large: bool = False
    short: bool = False
    sent: bool = False  # sent to a worker that died before starting it: already running
    data: bytes | None = None  # pickled, once it has been


class _Worker:
    def __init__(
        self,
        context: Any,
        preload: tuple[str, ...],
        initializer: Callable[[], None] | None,
        reserved: bool = False,
    ) -> None:
        self.reserved = reserved  # takes only jobs submitted with ``submit_large``
        parent, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, preload, initializer),
                                       daemon=True)  # fmt: skip
        self.process.start()
        child.close()
        self.conn: Connection = parent
        # the jobs sent, in order: the first one runs, the others wait in the worker's pipe
        self.jobs: deque[_Job] = deque()
        self.last_seen = time.monotonic()

    def takes(self, short: bool) -> bool:
        """Whether the worker can take one more job now: any when it has none, a short one
        behind short ones only."""
        if not self.jobs:
            return True
        return short and len(self.jobs) < SHORT_DEPTH and all(j.short for j in self.jobs)

    def stop(self, kill: bool = False) -> None:
        if kill and self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


class IsolatedPool(Executor):
    """``workers`` processes, one job each at a time; see the module docstring. ``reserved``
    more take only jobs given with ``submit_large`` (a large stream: its digests cannot be
    split, so it should not wait behind the small ones), which also go to the others."""

    def __init__(
        self,
        workers: int,
        context: Any = None,
        preload: tuple[str, ...] = (),
        stall_seconds: float = STALL_SECONDS,
        initializer: Callable[[], None] | None = None,
        reserved: int = 0,
    ) -> None:
        self.workers = max(1, workers)
        self.reserved = max(0, reserved)
        self.context = context or multiprocessing.get_context()
        self.preload = preload
        self.initializer = initializer  # run by each worker after the imports, before jobs
        self.stall_seconds = stall_seconds
        self.crashes = 0  # workers that died or were killed, for the record
        self._queue: deque[_Job] = deque()
        self._pool: list[_Worker] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="examkit-pool", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if kwargs:
            raise TypeError("IsolatedPool jobs take positional arguments only")
        return self._enqueue(fn, args, False)

    def submit_large(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        """``submit`` for a job on one large stream: a reserved worker takes it first."""
        return self._enqueue(fn, args, True)

    def submit_short(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        """``submit`` for a short job, which may wait in a worker behind another short one
        (see the module's docstring)."""
        return self._enqueue(fn, args, False, short=True)

    def _enqueue(
        self, fn: Callable[..., Any], args: tuple[Any, ...], large: bool, short: bool = False
    ) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._closing:
                raise RuntimeError("the pool is shut down")
            self._queue.append(_Job(future, fn, args, large, short))
        os.write(self._wake_w, b"x")
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the pool; a second call does nothing."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            if cancel_futures:
                while self._queue:
                    job = self._queue.popleft()
                    if job.sent:  # running, as far as its caller knows
                        job.future.set_exception(RuntimeError("the pool was shut down"))
                    else:
                        job.future.cancel()
        os.write(self._wake_w, b"x")
        if wait:
            self._thread.join()
        else:  # stop now: kill what runs (its results would be discarded anyway)
            for worker in list(self._pool):
                if worker.jobs:
                    worker.process.kill()
            if cancel_futures:  # nothing is left to run: the pool thread ends at once, after
                # the workers it is starting are up and told to stop (a worker cut off while
                # it starts, as this process exits, would print a traceback)
                self._thread.join(SHUTDOWN_SECONDS)

    # -- the dispatcher thread ---------------------------------------------------------
    def _run(self) -> None:
        try:
            # Every worker is started at once: its start-up (an interpreter importing the
            # evidence libraries) overlaps the caller's own set-up instead of delaying the
            # first job.
            for reserved in [False] * self.workers + [True] * self.reserved:
                if self._closing:
                    break
                worker = _Worker(self.context, self.preload, self.initializer, reserved)
                with self._lock:
                    self._pool.append(worker)
            while True:
                self._dispatch()
                with self._lock:
                    idle = not self._queue and all(not w.jobs for w in self._pool)
                    if self._closing and idle:
                        break
                ready = wait([w.conn for w in self._pool] + [w.process.sentinel for w in self._pool]
                             + [self._wake_r], timeout=0.5)  # fmt: skip
                if self._wake_r in ready:
                    os.read(self._wake_r, 4096)
                for worker in list(self._pool):
                    if worker.conn in ready or worker.process.sentinel in ready:
                        self._collect(worker)
                self._check_stalls()
        finally:
            for worker in self._pool:  # all are told first: they end at the same time
                with contextlib.suppress(OSError):
                    worker.conn.send(None)
            for worker in self._pool:
                worker.stop(kill=bool(worker.jobs))
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _idle(self, large: bool, short: bool = False) -> _Worker | None:
        """A worker for a job: an idle one (started if one is missing; a large job tries
        the reserved workers first), else, for a short job, one running short jobs with
        room for one more (the one with fewest)."""
        for reserved in (True, False) if large else (False,):
            worker = next((w for w in self._pool if not w.jobs and w.reserved == reserved),
                          None)  # fmt: skip
            if worker is not None:
                return worker
            if sum(w.reserved == reserved for w in self._pool) < (
                self.reserved if reserved else self.workers
            ):
                worker = _Worker(self.context, self.preload, self.initializer, reserved)
                self._pool.append(worker)
                return worker
        if short:
            room = [w for w in self._pool if not w.reserved and w.takes(True)]
            if room:
                return min(room, key=lambda w: len(w.jobs))
        return None

    def _dispatch(self) -> None:
        with self._lock:
            waiting: deque[_Job] = deque()
            while self._queue:  # in order; a large job may pass small ones that must wait
                job = self._queue.popleft()
                worker = self._idle(job.large, job.short)
                if worker is None:
                    waiting.append(job)
                    continue
                ahead = bool(worker.jobs)  # to wait in the worker's pipe
                data = job.data
                if data is None:
                    try:
                        data = bytes(ForkingPickler.dumps((job.fn, job.args)))
                    except Exception as exc:  # the job does not pickle
                        if job.sent or job.future.set_running_or_notify_cancel():
                            job.future.set_exception(exc)
                        continue
                if ahead and len(data) > SHORT_BYTES:
                    waiting.append(job._replace(data=data))  # sent when the worker is idle
                    continue
                if not job.sent and not job.future.set_running_or_notify_cancel():
                    continue
                if not ahead:  # (a job waiting behind another leaves its stall clock)
                    worker.last_seen = time.monotonic()
                worker.jobs.append(job)
                try:
                    worker.conn.send_bytes(data)
                except (OSError, ValueError) as exc:
                    worker.jobs.pop()
                    job.future.set_exception(exc)
            self._queue = waiting

    def _collect(self, worker: _Worker) -> None:
        while True:
            try:
                if not worker.conn.poll():
                    break
                kind, value = worker.conn.recv()
            except (EOFError, OSError):
                break
            worker.last_seen = time.monotonic()
            if kind == "beat":
                continue
            if worker.jobs:  # results come back in the order the jobs were sent
                job = worker.jobs.popleft()
                if kind == "ok":
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)
        if not worker.process.is_alive():
            self._replace(worker, WorkerDied(_how_it_died(worker.process.exitcode)))

    def _check_stalls(self) -> None:
        now = time.monotonic()
        for worker in list(self._pool):
            if worker.jobs and now - worker.last_seen > self.stall_seconds:
                worker.process.kill()
                worker.process.join(5)
                reason = f"no progress for {self.stall_seconds:.0f} s: the worker was stopped"
                self._replace(worker, WorkerStalled(reason))

    def _replace(self, worker: _Worker, error: WorkerDied) -> None:
        """A dead worker: fail the job it was running, put those waiting behind it back at
        the head of the queue (unless the pool is closing: they fail too), drop it (a new
        one is started when needed)."""
        self.crashes += 1
        jobs, worker.jobs = list(worker.jobs), deque()
        worker.stop()
        self._pool.remove(worker)
        if jobs:
            jobs[0].future.set_exception(error)
        with self._lock:
            for job in reversed(jobs[1:]):
                if self._closing:
                    job.future.set_exception(error)
                else:
                    self._queue.appendleft(job._replace(sent=True))


def _how_it_died(exitcode: int | None) -> str:
    if exitcode is None:
        return "the worker process ended"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"the worker process was killed by {name}"
    return f"the worker process exited with code {exitcode}"
