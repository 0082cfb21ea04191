"""The console script's fork server and resource tracker are forks of it, not new
interpreters (``examkit.executors.start_fork_server``), and behave as those would: only
the standard streams and multiprocessing's descriptors open, default signal handlers,
gone when the command ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from examkit.cli import entry

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")

PROBE = """
import json, os, signal, sys, threading
from multiprocessing import forkserver, resource_tracker
from examkit.executors import local_executor, start_fork_server

signal.signal(signal.SIGTERM, lambda *a: None)  # as the console script does
stray = open(sys.argv[1], "w")  # open here; a new interpreter would not have it
if sys.argv[2] == "thread":
    threading.Thread(target=threading.Event().wait, daemon=True).start()
start_fork_server(fork=True)
servers = {"fork_server": forkserver._forkserver._forkserver_pid,
           "resource_tracker": resource_tracker._resource_tracker._pid}
pool = local_executor(1)
worker = pool.submit(os.getpid).result(timeout=60)

def status(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return line.split()[1]

def opened(pid):
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return out

report = {name: {"pid": pid,
                 "cmdline": open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace"),
                 "caught": int(status(pid, "SigCgt"), 16),
                 "opened": opened(pid)} for name, pid in servers.items()}
report["self"] = open("/proc/self/cmdline", "rb").read().decode(errors="replace")
report["worker_parent"] = int(status(worker, "PPid"))
pool.shutdown()
print(json.dumps(report))
"""


def _probe(tmp_path: Path, mode: str) -> dict[str, object]:
    stray = tmp_path / "stray.txt"
    out = subprocess.run([sys.executable, "-c", PROBE, str(stray), mode], capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    report: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    report["stray"] = str(stray)
    return report


def _gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_the_fork_server_is_a_fork_that_behaves_like_a_new_interpreter(tmp_path: Path) -> None:
    report = _probe(tmp_path, "single")
    for name in ("fork_server", "resource_tracker"):
        server = report[name]
        assert isinstance(server, dict)
        # a fork keeps its parent's command line; a new interpreter runs `python -c CODE`
        assert server["cmdline"] == report["self"], name
        assert report["stray"] not in server["opened"], name  # only what it was given
        assert not server["caught"] & (1 << (signal.SIGTERM - 1)), name  # default SIGTERM
        assert _gone(server["pid"]), f"the {name} outlived the command"
    fork_server = report["fork_server"]
    assert isinstance(fork_server, dict)
    assert report["worker_parent"] == fork_server["pid"]  # the pool's workers fork from it


def test_with_a_thread_running_the_servers_are_new_interpreters(tmp_path: Path) -> None:
    """A fork of a process with threads would run on with locks another thread held."""
    report = _probe(tmp_path, "thread")
    for name, module in (("fork_server", "forkserver"), ("resource_tracker", "resource_tracker")):
        server = report[name]
        assert isinstance(server, dict)
        assert f"from multiprocessing.{module} import main" in server["cmdline"], name
        assert _gone(server["pid"]), f"the {name} outlived the command"


class _Started(Exception):
    pass


def test_only_the_console_script_forks_its_fork_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """``main()`` with no arguments is the console script's process; ``main(argv)`` is
    called from other code (tests, a host program) that may run threads."""
    calls: list[bool] = []

    def fake(fork: bool = False) -> None:
        calls.append(fork)
        raise _Started

    monkeypatch.setattr("examkit.executors.start_fork_server", fake)
    monkeypatch.setattr(sys, "argv", ["examkit", "scan", "image.raw", "--case", "c.sqlite"])
    # the console script's own handling of the process's end, not wanted in this one
    monkeypatch.setattr(entry, "_ignore_late_signals", lambda: None)
    monkeypatch.setattr(entry, "_skip_final_collections", lambda: None)
    term = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(_Started):
            entry.main()
    finally:
        signal.signal(signal.SIGTERM, term)
    with pytest.raises(_Started):
        entry.main(["scan", "image.raw", "--case", "c.sqlite"])
    assert calls == [True, False]
