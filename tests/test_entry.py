"""The console script's process set-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from examkit.cli import entry


def test_the_console_script_starts_no_blas_threads() -> None:
    """numpy's OpenBLAS pool (threads that spin after start-up) is not started."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    code = "import examkit.cli.entry, numpy, os; print(len(os.listdir('/proc/self/task')))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    assert out.strip() == "1"


@pytest.mark.parametrize(
    ("args", "env", "pooled"),
    [
        (["scan", "disk.raw", "--case", "c.sqlite"], {}, True),
        (["scan", "disk.raw", "--workers", "4"], {}, True),
        (["batch", "jobs.toml"], {}, True),
        (["scan", "disk.raw", "--workers", "0"], {}, False),
        (["scan", "disk.raw", "-w", "0"], {}, False),
        (["scan", "disk.raw", "--workers=0"], {}, False),
        (["scan", "disk.raw"], {"EXAMKIT_WORKERS": "0"}, False),
        (["scan", "disk.raw", "--cluster", "tcp://10.0.0.1:8786"], {}, False),
        (["scan", "disk.raw"], {"EXAMKIT_CLUSTER": "tcp://10.0.0.1:8786"}, False),
        (["scan", "--help"], {}, False),
        (["report", "c.sqlite"], {}, False),
        ([], {}, False),
    ],
)
def test_the_fork_server_starts_early_only_for_a_local_pool(
    args: list[str], env: dict[str, str], pooled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("EXAMKIT_WORKERS", "EXAMKIT_CLUSTER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert entry._uses_local_pool(args) is pooled


def test_the_console_script_leaves_nothing_for_the_final_collections(tmp_path: Path) -> None:
    """After its command, the console script freezes what is left: the interpreter's
    finalisation then has nothing to collect, and the command's output is complete."""
    code = (
        "import gc, sys; from examkit.cli import entry; sys.argv = ['examkit', '--version'];"
        " rc = entry.main(); print('frozen', gc.get_freeze_count() > 1000, rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout  # fmt: skip
    lines = out.strip().splitlines()
    assert lines[0].startswith("examkit ")  # the version line, printed before
    assert lines[-1] == "frozen True 0"
