"""SIGINT / SIGTERM at random points of real scans: each run ends interrupted, nothing is lost,
and --resume (interrupted again and again) ends with the rows of an uninterrupted scan."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import comparable_rows

EXAMKIT = str(Path(sys.executable).with_name("examkit"))
SKIP = frozenset({"run_id"})


def _scan(image: Path, case: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [EXAMKIT, "scan", str(image), "--case", str(case), "--workers", "2", "--no-perceptual",
         *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _wait(process: subprocess.Popen[str], seconds: float) -> int:
    """The exit code; a process still alive after ``seconds`` fails the test with where each
    of its threads and its workers' threads are (``kill -USR1``: examkit.stackdump)."""
    try:
        return process.wait(seconds)
    except subprocess.TimeoutExpired:
        family = _family(process.pid)
        for sig in (signal.SIGUSR1, signal.SIGKILL):
            for pid in family:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            time.sleep(2)
        stderr = process.stderr.read() if process.stderr else ""
        pytest.fail(f"examkit did not exit in {seconds} s; its stacks:\n{stderr}")


def _family(pid: int) -> list[int]:
    """``pid`` and its descendants (the fork server's workers are its grandchildren)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [pid, *(p for c in children.stdout.split() for p in _family(int(c)))]


def _runs(case: Path) -> list[str]:
    """Statuses of the case's runs (none when no case was made); opened read-only."""
    if not case.exists():
        return []
    conn = sqlite3.connect(f"file:{case}?mode=ro", uri=True)
    try:
        return [r[0] for r in conn.execute("SELECT status FROM runs ORDER BY run_id")]
    finally:
        conn.close()


def test_random_interrupts_then_resume_give_the_uninterrupted_result(
    fixture_images: Path, tmp_path: Path
) -> None:
    image = fixture_images / "mbr.raw"  # several partitions and file systems
    reference = tmp_path / "reference.sqlite"
    started = time.monotonic()
    assert _wait(_scan(image, reference), 120) == 0
    whole = time.monotonic() - started  # signals fall within a scan however fast this machine
    rng = random.Random(8)
    interrupts = 0
    for attempt in range(2):
        case = tmp_path / f"case{attempt}.sqlite"
        resume: tuple[str, ...] = ()
        for _round in range(6):
            _runs_before = _runs(case)
            process = _scan(image, case, *resume)
            time.sleep(rng.uniform(0.05, max(0.1, 0.9 * whole)))
            if process.poll() is None:
                process.send_signal(rng.choice([signal.SIGINT, signal.SIGTERM]))
                interrupts += 1
            code = _wait(process, 60)
            stderr = process.stderr.read() if process.stderr else ""
            if code < 0:  # the signal came while Python itself was starting: nothing began
                assert not case.exists() or _runs(case) == _runs_before
                continue
            assert code in (0, 1, 130), stderr
            if code == 0:
                break
            assert "interrupted" in stderr and "Traceback" not in stderr, (code, stderr)
            runs = _runs(case)
            if runs and runs[-1] == "complete":  # it came in the last instants, once the run
                break  # and the case were closed: nothing of it is undone
            assert not runs or runs[-1] == "interrupted"  # (none: stopped before it started)
            resume = ("--resume",) if runs else ()
        else:
            assert _wait(_scan(image, case, "--resume"), 120) == 0
        assert comparable_rows(case, SKIP) == comparable_rows(reference, SKIP)
        verify = subprocess.run([EXAMKIT, "verify", str(case)], capture_output=True, text=True)
        assert verify.returncode == 0, verify.stdout
    assert interrupts >= 4  # the test really interrupted scans
    assert not [p for p in os.listdir(tmp_path) if p.endswith("-journal")]


def test_an_interrupted_case_creation_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from examkit import case as case_module
    from examkit.case import Case

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(case_module.custody, "append", interrupted)
    path = tmp_path / "new.sqlite"
    with pytest.raises(KeyboardInterrupt):
        Case.create(path)
    assert list(tmp_path.iterdir()) == []  # no half-made case blocks the next attempt


def _signal_after(monkeypatch: pytest.MonkeyPatch, module: object, name: str,
                  signum: int) -> None:  # fmt: skip
    """Make ``module.name`` send ``signum`` to this process right after it returns (so the
    signal lands in the step between recording a run and guarding it)."""
    real = getattr(module, name)

    def wrapped(*args: object, **kwargs: object) -> object:
        result = real(*args, **kwargs)
        os.kill(os.getpid(), signum)
        return result

    monkeypatch.setattr(module, name, wrapped)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_just_after_the_run_is_recorded_closes_it_interrupted(
    fixture_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: int
) -> None:
    from examkit import scan as scan_module
    from examkit.scan import ScanInterrupted, ScanOptions, scan

    case = tmp_path / "case.sqlite"
    _signal_after(monkeypatch, scan_module, "_start_run", signum)
    with pytest.raises(ScanInterrupted):
        scan(case, [fixture_images / "fat16.raw"], options=ScanOptions(workers=0))
    assert _runs(case) == ["interrupted"]  # not left "running" for the next command to close
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def test_a_signal_while_the_run_is_closed_leaves_it_complete(
    fixture_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from examkit import scan as scan_module
    from examkit.scan import ScanOptions, scan

    case = tmp_path / "case.sqlite"
    _signal_after(monkeypatch, scan_module, "_counts", signal.SIGINT)  # inside the closing
    summary = scan(case, [fixture_images / "fat16.raw"], options=ScanOptions(workers=0))
    assert summary.status == "complete" and _runs(case) == ["complete"]
    verify = subprocess.run([EXAMKIT, "verify", str(case)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout


def test_a_signal_just_after_a_match_run_is_recorded_closes_it_interrupted(
    fixture_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from examkit import rematch as rematch_module
    from examkit.rematch import rematch
    from examkit.scan import ScanOptions, scan

    case = tmp_path / "case.sqlite"
    scan(case, [fixture_images / "fat16.raw"], options=ScanOptions(workers=0))
    _signal_after(monkeypatch, rematch_module, "start_run", signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        rematch(case, examiner="pytest")
    assert _runs(case) == ["complete", "interrupted"]


def test_an_interrupt_while_the_case_file_is_made_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connecting writes the file's first bytes: a Ctrl-C right then (the scan's own random
    interrupts met it) left a file without tables that later runs refused to open."""
    from examkit import case as case_module

    connect = case_module._connect

    def interrupted(path: Path) -> sqlite3.Connection:
        connect(path).close()  # the file now exists, with its WAL header
        raise KeyboardInterrupt

    monkeypatch.setattr(case_module, "_connect", interrupted)
    path = tmp_path / "case.sqlite"
    with pytest.raises(KeyboardInterrupt):
        case_module.Case.create(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    monkeypatch.undo()
    case_module.Case.create(path).close()  # the same path is free for the next run
