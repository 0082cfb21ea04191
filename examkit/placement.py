"""A large stream's reading thread kept off the cores its digests run on (Linux).

A large stream is read by one thread while its digests run in others (lanes,
``examkit.hashing``). Each time a lane finishes a chunk it wakes the reader, and Linux
then often runs the reader on that lane's own core, pre-empting the digest, although the
other core was running work at a lowered priority. In scans of the bench image the
1.2 GB file's digest thread waited 0.06-0.19 s for its core, nearly all of it behind its
own reader (``perf sched``), and that file's digests end the scan.

So while a stream's chunks go to lanes, the reading thread's CPU affinity leaves out the
cores its lanes are on at that chunk (looked up again at each chunk, as they move); the
digests are never pinned, and the reader gets its own affinity back when the stream ends
(``release``). Nothing changes where no core would be left, off Linux, or with
``EXAMKIT_READER_PLACEMENT=0``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable

PLACEMENT_ENV = "EXAMKIT_READER_PLACEMENT"

_local = threading.local()  # per reading thread: its own affinity, and the one it has now
_enabled: bool | None = None


def enabled() -> bool:
    """Whether readers are placed in this process (decided once)."""
    global _enabled
    if _enabled is None:
        _enabled = (
            hasattr(os, "sched_setaffinity")
            and os.path.isdir("/proc/self/task")
            and os.environ.get(PLACEMENT_ENV, "").strip() != "0"
        )
    return _enabled


def cpu_of(tid: int) -> int | None:
    """The core the thread ``tid`` of this process last ran on (``/proc``), or None."""
    try:
        with open(f"/proc/self/task/{tid}/stat", "rb") as f:
            stat = f.read()
        # the fields after the name (which may hold spaces and parentheses) start at the
        # third, the state; the 39th is the processor
        return int(stat[stat.rindex(b")") + 2 :].split()[36])
    except (OSError, ValueError, IndexError):
        return None


def keep_off(tids: Iterable[int]) -> None:
    """Keep the calling thread off the cores the threads ``tids`` are on now."""
    if not enabled():
        return
    try:
        own = getattr(_local, "own", None)
        if own is None:
            own = frozenset(os.sched_getaffinity(0))
            _local.own = _local.now = own
        mask = own - {cpu for tid in tids if (cpu := cpu_of(tid)) is not None}
        if mask and mask != _local.now:
            os.sched_setaffinity(0, mask)
            _local.now = mask
    except OSError:  # the cores allowed changed meanwhile (a cpuset): left as it is
        pass


def release() -> None:
    """Give the calling thread back the affinity it had before ``keep_off``."""
    own = getattr(_local, "own", None)
    if own is None:
        return
    _local.own = None
    if _local.now != own:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, own)
