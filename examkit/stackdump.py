"""``kill -USR1 PID`` prints where every thread of an examkit process is (a scan that seems
stuck: its parent, listing worker or hashing workers). Code locations only (module, function,
line): no evidence name or content is printed. Written to the process's standard error."""

from __future__ import annotations

import faulthandler
import signal
import sys

SIGNAL = getattr(signal, "SIGUSR1", None)  # (none on Windows)


def on_signal() -> None:
    """Dump every thread's stack to standard error on SIGUSR1; the process goes on."""
    if SIGNAL is None or sys.stderr is None:
        return
    try:
        faulthandler.register(SIGNAL, file=sys.stderr, all_threads=True, chain=False)
    except (AttributeError, ValueError, OSError, RuntimeError):  # no usable stderr descriptor
        return
