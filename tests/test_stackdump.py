"""``kill -USR1`` makes an examkit process print its threads' stacks and go on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="no SIGUSR1 here")

_CHILD = """
import os, signal, sys, threading
from examkit import stackdump
stackdump.on_signal()
ready = threading.Event()
def parked():
    ready.set()
    threading.Event().wait(5)
threading.Thread(target=parked, name="parked", daemon=True).start()
ready.wait()
os.kill(os.getpid(), signal.SIGUSR1)
print("still running")
"""


def test_sigusr1_dumps_every_thread_and_the_process_goes_on() -> None:
    done = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "still running\n"
    assert done.stderr.count("Current thread 0x") == 1  # the main thread
    assert done.stderr.count("\nThread 0x") + done.stderr.startswith("Thread 0x") == 1
    assert "in parked" in done.stderr and "<string>" in done.stderr


_POOL = """
import multiprocessing, signal
from examkit.isolation import IsolatedPool
if __name__ == "__main__":
    pool = IsolatedPool(1, multiprocessing.get_context("forkserver"))
    try:
        import os
        first = pool.submit(os.getpid).result(60)
        pool.submit(signal.raise_signal, signal.SIGUSR1).result(60)
        assert pool.submit(os.getpid).result(60) == first  # the same worker, alive
        print("worker alive")
    finally:
        pool.shutdown()
"""


def test_a_pool_worker_dumps_its_stack_and_lives_on(tmp_path: Path) -> None:
    script = tmp_path / "pool.py"
    script.write_text(_POOL)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "worker alive\n"
    assert "isolation.py" in done.stderr and "in _worker_main" in done.stderr


def test_the_console_script_dumps_its_stack_and_goes_on(tmp_path: Path) -> None:
    fifo = tmp_path / "hashes"  # a named pipe that nobody writes to: a command that waits
    os.mkfifo(fifo)
    command = subprocess.Popen(
        [str(Path(sys.executable).with_name("examkit")), "hashset", "lookup", "known-bad",
         "--file", str(fifo), "--hashset-dir", str(tmp_path)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(3)
        command.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        assert command.poll() is None  # still running after the dump
    finally:
        command.terminate()
        stderr = command.communicate(timeout=60)[1]
    assert "Current thread 0x" in stderr and "entry.py" in stderr, stderr
