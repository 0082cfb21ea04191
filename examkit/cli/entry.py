"""The ``examkit`` console script: a lean path for bulk lookups, else the full CLI."""

from __future__ import annotations

import gc
import os
import signal
import sys
from collections.abc import Sequence

# examkit does no linear algebra, but numpy starts OpenBLAS's thread pool, whose threads
# spin for a while after start-up in the CLI and in every worker (1.5% of a scan's CPU
# in `perf`). Set before numpy is imported; the worker processes inherit it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from examkit import stackdump
from examkit.display import safe_text
from examkit.errors import ExamkitError


def error_line(message: str, hint: str = "") -> None:
    """One line for the error, one for the hint; plain text, never wrapped or styled."""
    sys.stderr.write(f"examkit: error: {safe_text(message)}\n")
    if hint:
        sys.stderr.write(f"hint: {safe_text(hint)}\n")


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a command as cleanly as Ctrl-C


def _ignore_late_signals() -> None:
    """Once a command has returned, what it did is recorded: a Ctrl-C or SIGTERM that
    arrives while the process shuts down must not turn its exit code into a signal."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except KeyboardInterrupt:  # one arrived in between
        _ignore_late_signals()


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the console script: a process of its own
        signal.signal(signal.SIGTERM, _terminate)
        stackdump.on_signal()  # `kill -USR1 PID`: where each thread is, on stderr
        if sys.argv[1:3] == ["hashset", "lookup"]:
            gc.disable()  # a one-shot bulk lookup: collecting start-up objects is wasted time
        try:
            return _main(sys.argv[1:], own_process=True)
        except KeyboardInterrupt:  # in the few steps between a command's end and this
            error_line("interrupted", "run 'examkit info' to see what was recorded")
            return 130
        finally:
            _ignore_late_signals()
            _skip_final_collections()
    return _main(list(argv))


def _skip_final_collections() -> None:
    """The process exits next: the interpreter's finalisation would run several full
    garbage collections over every object the command left (0.2 s of one core after a
    scan, in `perf`). One collection now (so that anything left in a reference cycle, a
    file or a connection, is still closed by its finaliser), then what survives it is
    frozen and not collected again; atexit handlers still run."""
    gc.collect()
    gc.freeze()


_POOLED = ("scan", "batch", "demo")  # commands that hash in a local pool by default


def _uses_local_pool(args: list[str]) -> bool:
    """Whether this command line will start local worker processes (a guess that errs
    only towards an idle fork server): not for help, a cluster or ``--workers 0``."""
    if not args or args[0] not in _POOLED or {"--help", "-h"} & set(args):
        return False
    if "--cluster" in args or any(a.startswith("--cluster=") for a in args):
        return False
    if os.environ.get("EXAMKIT_CLUSTER") or os.environ.get("EXAMKIT_WORKERS") == "0":
        return False
    pairs = zip(args, [*args[1:], ""], strict=True)
    return not any((a in ("--workers", "-w") and b == "0") or a in ("--workers=0", "-w0")
                   for a, b in pairs)  # fmt: skip


def _main(args: list[str], own_process: bool = False) -> int:
    if _uses_local_pool(args):  # workers get ready while the command line is parsed
        from examkit.executors import start_fork_server

        # the console script has started no thread yet: the fork server may be its fork
        start_fork_server(fork=own_process)
    if args[:2] == ["hashset", "lookup"] and "--debug" not in args:
        from .lookup_lean import fast_lookup

        try:
            code = fast_lookup(args)
        except ExamkitError as exc:
            error_line(exc.message, exc.hint)
            return exc.exit_code
        except KeyboardInterrupt:
            error_line("interrupted", "nothing was changed; run the command again")
            return 130
        if code is not None:
            return code
        gc.enable()  # (the console script turned it off for the lean path)
    try:
        from .app import main as full_main
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM while the program is still loading
        error_line("interrupted", "nothing was started; run the command again")
        return 130
    # The modules just loaded live as long as the process: kept out of the collector's
    # full passes, which would otherwise walk them again and again during a long command.
    gc.freeze()
    return full_main(args)


if __name__ == "__main__":
    sys.exit(main())
