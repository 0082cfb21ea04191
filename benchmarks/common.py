"""Helpers shared by the benchmarks: run a command as a fresh child, measure it."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

EXAMKIT = str(Path(sys.executable).with_name("examkit"))


def compile_bytecode() -> None:
    """Write the bytecode of examkit and its first-party plugins first, as installing a
    wheel does: an editable install under ``PYTHONDONTWRITEBYTECODE`` would otherwise
    compile every module again in every process (the plugins alone: ~0.1 s of each)."""
    import examkit
    import examkit_plugins

    folders = [str(Path(m.__file__).parent) for m in (examkit, examkit_plugins)]  # type: ignore[arg-type]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *folders], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def fiwalk_digests(xml: Path) -> dict[str, dict[str, str]]:
    """``{"/path": {"md5": ..., "sha1": ...}}`` for every file object in a ``fiwalk -X``
    report (digests lower-case)."""
    import xml.etree.ElementTree as ET

    found: dict[str, dict[str, str]] = {}
    for _event, element in ET.iterparse(xml):
        if element.tag.rsplit("}", 1)[-1] == "fileobject":
            name = element.findtext("{*}filename") or element.findtext("filename") or ""
            found["/" + name] = {
                h.get("type", ""): (h.text or "").lower()
                for h in element.iter()
                if h.tag.rsplit("}", 1)[-1] == "hashdigest"
            }
            element.clear()
    return found


def missing_tool(*tools: str) -> str | None:
    """The first of ``tools`` not on PATH (printed with how to install it), or None."""
    import shutil

    for tool in tools:
        if shutil.which(tool) is None:
            print(f"{tool} is not installed: 'make apt-test' installs it")
            return tool
    return None


def work_folder(kept: Path | None, prefix: str) -> Path:
    """``kept`` (created if need be), or a fresh temporary folder."""
    import tempfile

    work = kept or Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    return work


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


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/PID/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return found


def _pss_kib(pid: int) -> int:
    """Proportional set size of one process (shared pages split between their users)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def measure_tree(cmd: list[str], env: dict[str, str] | None = None, stdout: Path | None = None,
                 interval: float = 0.1, sample: bool = True) -> tuple[float, int, int]:  # fmt: skip
    """Wall seconds, peak total PSS (KiB) of the command and every process it starts (the
    whole scan: parent and workers, sampled every ``interval`` s), and the peak of that
    total's largest process. The wall time ends when the command exits (a thread samples
    the memory; the wait for the command is not rounded to the sampling interval).

    Sampling is not free: reading ``smaps_rollup`` of a scan's five processes takes ~27 ms
    of CPU, a quarter of a core at 0.1 s, taken from the command measured. Timings are
    therefore taken with ``sample=False`` (peaks 0) and memory in a run of its own."""
    import threading
    import time

    os.sync()
    out = open(stdout, "wb") if stdout else subprocess.DEVNULL  # noqa: SIM115
    peaks = [0, 0]  # total, largest process
    done = threading.Event()
    started = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, env=env)

    def sampling() -> None:
        while True:
            sizes = [_pss_kib(p) for p in _tree(child.pid)]
            peaks[0] = max(peaks[0], sum(sizes))
            peaks[1] = max(peaks[1], max(sizes, default=0))
            if done.wait(interval):
                return

    sampler = threading.Thread(target=sampling, daemon=True)
    if sample:
        sampler.start()
    child.wait()
    wall = time.perf_counter() - started
    done.set()
    if sample:
        sampler.join()
    if stdout:
        out.close()  # type: ignore[union-attr]
    if child.returncode != 0:
        raise SystemExit(f"command failed ({child.returncode}): {' '.join(cmd)}")
    return wall, peaks[0], peaks[1]


def untyped_cpu_seconds(image: Path, case: Path, env: dict[str, str]) -> float:
    """CPU seconds of a one-process scan (``--workers 0``, so every second is counted) in
    which libmagic is replaced by a constant (``untyped_scan.py``): listing, reading,
    digests, matching, recording. The case it writes is removed."""
    import resource

    def clear() -> None:
        for leftover in case.parent.glob(case.name + "*"):
            leftover.unlink()

    clear()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, str(Path(__file__).with_name("untyped_scan.py")), "scan",
                    str(image), "--case", str(case), "--workers", "0", "--no-verify",
                    "--no-perceptual", "--json"], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    clear()
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
