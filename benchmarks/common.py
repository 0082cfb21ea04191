"""Helpers shared by the benchmarks: run a command as a fresh child, measure it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EXAMKIT = str(Path(sys.executable).with_name("examkit"))


def measure(cmd: list[str], env: dict[str, str] | None = None, stdout: Path | None = None
            ) -> tuple[float, int]:  # fmt: skip
    """Wall seconds and peak RSS (KiB) of one command, measured in a fresh child."""
    probe = (
        "import resource, subprocess, sys, time, json\n"
        "out = open(sys.argv[1], 'wb') if sys.argv[1] != '-' else subprocess.DEVNULL\n"
        "t = time.perf_counter()\n"
        "rc = subprocess.run(sys.argv[2:], stdout=out, stderr=subprocess.DEVNULL).returncode\n"
        "wall = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps([rc, wall, rss]))\n"
    )
    os.sync()  # earlier writes are flushed first: neither tool pays for the other's
    result = subprocess.run(
        [sys.executable, "-c", probe, str(stdout) if stdout else "-", *cmd],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    rc, wall, rss = json.loads(result.stdout)
    if rc not in (0, 1):  # lookup exits 1 when nothing is found
        raise SystemExit(f"command failed ({rc}): {' '.join(cmd)}")
    return wall, rss
