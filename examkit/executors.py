"""Where work units run: a local process pool, in this process (``--workers 0``), or on a
Dask distributed cluster (``--cluster tcp://HOST:PORT``)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Sequence
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


def start_fork_server(fork: bool = False) -> None:
    """Start the fork server now, without waiting for it: its preload (the evidence
    libraries, the plugins, libmagic's database) then runs while this process is still
    starting, and the pool's first workers fork from a ready server.

    With ``fork`` (the console script, before it has started any thread), the fork server
    and multiprocessing's resource tracker are forks of this process running the code
    multiprocessing would start a new interpreter for: they skip that interpreter's start
    (~0.05 s each) and begin at once. Otherwise, or once a thread runs here, they are new
    interpreters, as multiprocessing starts them."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    from multiprocessing import forkserver, util

    multiprocessing.get_context("forkserver").set_forkserver_preload([PRELOAD])
    if not (fork and _single_threaded()):
        forkserver.ensure_running()
        return
    spawn = util.spawnv_passfds
    util.spawnv_passfds = _fork_passfds
    try:
        forkserver.ensure_running()
    except OSError:  # no fork now (a process limit): new interpreters, if they can start
        util.spawnv_passfds = spawn
        forkserver.ensure_running()
    finally:
        util.spawnv_passfds = spawn


def _single_threaded() -> bool:
    """Whether this process runs one thread (Python's or a library's): only then is a fork
    that goes on running Python safe."""
    import threading

    if threading.active_count() != 1:
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _fork_passfds(path: Any, args: Sequence[Any], passfds: Sequence[int]) -> int:
    """``multiprocessing.util.spawnv_passfds`` for ``python -c CODE``, by a fork that runs
    CODE: like the new interpreter, the child keeps only the standard streams and
    ``passfds`` open and has the default handlers for SIGINT and SIGTERM."""
    code = str(args[list(args).index("-c") + 1])
    keep = sorted({0, 1, 2, *map(int, passfds)})
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    pid = os.fork()
    if pid:
        return pid
    status = 1
    try:
        for low, high in zip(keep, [*keep[1:], os.sysconf("SC_OPEN_MAX")], strict=True):
            os.closerange(low + 1, high)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        exec(code, {"__name__": "__mp_main__"})  # multiprocessing's own code, as for -c
        status = 0
    except SystemExit as exc:  # the fork server's end: every client has gone
        status = exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:  # a Ctrl-C before the code ignores it: the command stops too
        pass
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(status)  # never this process's own exit handlers, nor its buffered output


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
