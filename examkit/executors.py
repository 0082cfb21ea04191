"""Where work units run: a local process pool, in this process (``--workers 0``), or on a
Dask distributed cluster (``--cluster tcp://HOST:PORT``)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from .isolation import STALL_SECONDS, IsolatedPool


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


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


PRELOAD = "examkit.preload"  # what the fork server imports before it forks workers


def local_executor(workers: int, stall_seconds: float = STALL_SECONDS) -> Executor:
    """``workers`` isolated processes (``examkit.isolation``); ``0`` runs in this process."""
    if workers <= 0:
        return InlineExecutor()
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload([PRELOAD])
    from .worker import settle

    # one more worker, for large streams only: a big file found while the others hash
    # small ones starts at once (its digests cannot be split, and they often end a scan)
    return IsolatedPool(workers, context, (PRELOAD,), stall_seconds, initializer=settle,
                        reserved=1)  # fmt: skip


def start_fork_server() -> None:
    """Start the fork server now, without waiting for it: its preload (the evidence
    libraries, the plugins, libmagic's database; ~0.5 s of one core) then runs while this
    process is still starting, and the pool's first workers fork from a ready server."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    from multiprocessing import forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload([PRELOAD])
    forkserver.ensure_running()


CONNECT_TIMEOUT = 20  # seconds to reach the Dask scheduler


class ClusterExecutor(Executor):
    """Work units on a Dask distributed scheduler's workers (``dask.distributed``).

    Workers open the evidence themselves through shared storage (paths mapped
    with ``--path-map``); results come back to this process, the one writer.
    The scheduler re-runs a unit whose worker is lost.
    """

    def __init__(self, address: str) -> None:
        from .errors import UsageError

        try:
            from distributed import Client
        except ImportError as exc:
            raise UsageError(
                "--cluster needs the dask.distributed package",
                "pip install 'examkit[cluster]' (or: pip install 'dask[distributed]')",
            ) from exc
        try:
            self.client = Client(address, timeout=CONNECT_TIMEOUT)  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError) as exc:
            raise UsageError(
                f"cannot reach the Dask scheduler at {address}: {exc}",
                "start it with 'dask scheduler' and workers with 'dask worker ADDRESS'",
            ) from exc
        self._executor = self.client.get_executor(pure=False)  # type: ignore[no-untyped-call]

    @property
    def workers(self) -> int:
        threads = self.client.nthreads()  # type: ignore[no-untyped-call]
        return max(1, int(sum(threads.values())))

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = self._executor.submit(fn, *args, **kwargs)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait)
        self.client.close()  # type: ignore[no-untyped-call]


def map_path(path: str, mapping: tuple[tuple[str, str], ...]) -> str:
    """``path`` as the workers see it: the first LOCAL prefix that matches becomes REMOTE."""
    for local, remote in mapping:
        if path == local or path.startswith(local.rstrip("/") + "/"):
            return remote.rstrip("/") + path[len(local.rstrip("/")) :]
    return path
