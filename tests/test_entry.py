"""The console script's process set-up."""

from __future__ import annotations

import os
import subprocess
import sys


def test_the_console_script_starts_no_blas_threads() -> None:
    """numpy's OpenBLAS pool (threads that spin after start-up) is not started."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    code = "import examkit.cli.entry, numpy, os; print(len(os.listdir('/proc/self/task')))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    assert out.strip() == "1"
