"""Where work units run: a local process pool, or in this process (``--workers 0``)."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _worker_init() -> None:
    # The parent alone handles Ctrl-C / SIGTERM: it records the interruption and
    # stops the pool, so workers must not die half-way with their own traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class InlineExecutor(Executor):
    """Runs each call at once in this process (for debugging and tiny jobs)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            future.set_exception(exc)
        return future


def local_executor(workers: int) -> Executor:
    """A pool of ``workers`` processes; ``0`` runs everything in this process."""
    if workers <= 0:
        return InlineExecutor()
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(["examkit.worker"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init)
