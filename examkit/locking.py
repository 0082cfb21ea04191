"""One writer per case: an advisory lock held by every command that writes a case.

The lock is ``flock`` on ``CASE.lock`` next to the case file (``case.sqlite.lock``),
taken without waiting: a second process gets a clear one-line error naming the
holder (pid, command, since when) instead of interleaving its work. The kernel
drops the lock when the holder exits, however it exits (a crash or ``kill -9``
leaves no stale lock). Within one process the lock is re-entrant, so a batch
that holds it can call ``scan`` for each item.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .clock import utc_now
from .errors import ExamkitError


class CaseLocked(ExamkitError):
    """Another process is writing the case."""


_held: dict[Path, tuple[int, int]] = {}  # lock file -> (fd, depth) held by this process
_guard = threading.Lock()


def lock_path(case_path: Path) -> Path:
    case_path = Path(case_path)
    return case_path.with_name(case_path.name + ".lock")


@contextmanager
def case_lock(case_path: Path, command: str = "") -> Iterator[None]:
    """Hold the case's write lock for the block (re-entrant in this process)."""
    path = lock_path(case_path).resolve()
    with _guard:
        if path in _held:
            fd, depth = _held[path]
            _held[path] = (fd, depth + 1)
        else:
            _held[path] = (_acquire(path, case_path, command), 1)
    try:
        yield
    finally:
        with _guard:
            fd, depth = _held[path]
            if depth > 1:
                _held[path] = (fd, depth - 1)
            else:
                del _held[path]
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


def _acquire(path: Path, case_path: Path, command: str) -> int:
    if not path.parent.exists():
        from .errors import CaseError

        raise CaseError(f"folder {path.parent} does not exist",
                        "create it first, or give another case path")  # fmt: skip
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise CaseLocked(
            f"case {case_path} is being written by another examkit process ({holder})",
            "wait for it to finish (or stop it); two writers would interleave their records",
        ) from None
    except OSError as exc:
        os.close(fd)
        raise CaseLocked(f"cannot lock {path}: {exc.strerror}",
                         "check the folder of the case is writable") from exc  # fmt: skip
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "since_utc": utc_now(),
                             "command": command or " ".join(sys.argv[:2])}).encode())  # fmt: skip
    return fd


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096) or b"{}")
        command = info.get("command") or "examkit"
        return f"pid {info.get('pid')}, {command}, since {info.get('since_utc')}"
    except (OSError, ValueError):
        return "holder unknown"
