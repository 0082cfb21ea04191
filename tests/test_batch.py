"""``examkit batch``: unattended queues that survive bad items, resume, and lock their case."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from examkit.cli.app import main
from tests.conftest import comparable_rows

EXAMKIT = str(Path(sys.executable).with_name("examkit"))
SKIP_IDS = frozenset({"file_id", "evidence_id", "run_id", "volume_id", "filesystem_id"})


def events_of(text: str) -> list[dict[str, Any]]:
    """Every stdout line must be one JSON object."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_jobs(folder: Path, body: str) -> Path:
    path = folder / "jobs.toml"
    path.write_text(textwrap.dedent(body))
    return path


@pytest.fixture
def evidence(fixture_images: Path, tmp_path: Path) -> dict[str, Path]:
    """A good raw image, a truncated E01 (corrupt) and a path that does not exist."""
    good = tmp_path / "good.raw"
    shutil.copy(fixture_images / "fat16.raw", good)
    data = (fixture_images / "ntfs.E01").read_bytes()
    corrupt = tmp_path / "corrupt.E01"
    corrupt.write_bytes(data[: len(data) // 3])
    return {"good": good, "corrupt": corrupt, "missing": tmp_path / "gone.raw"}


def test_one_corrupt_and_one_missing_item_do_not_stop_the_batch(
    evidence: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = write_jobs(
        tmp_path,
        f"""
        examiner = "Batch Examiner"
        workers = 1

        [[case]]
        path = "cases/lab.sqlite"
        case_number = "2026-LAB-7"

          [[case.evidence]]
          path = "{evidence["good"]}"
          id = "E001"

          [[case.evidence]]
          path = "{evidence["corrupt"]}"
          id = "E002"

          [[case.evidence]]
          path = "{evidence["missing"]}"
          id = "E003"

          [[case.report]]
          format = "csv"
          output = "reports/lab.csv"
    """,
    )
    (tmp_path / "cases").mkdir()
    (tmp_path / "reports").mkdir()
    code = main(["batch", str(jobs), "--json"])
    captured = capsys.readouterr()
    assert code == 4, captured.err
    events = events_of(captured.out)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "batch_started" and kinds[-1] == "batch_finished"
    assert all(e["utc"].endswith("Z") for e in events)
    finished = {e["evidence_id"]: e for e in events if e["event"] == "evidence_finished"}
    failed = {e["evidence_id"]: e for e in events if e["event"] == "evidence_failed"}
    assert set(finished) == {"E001"} and set(failed) == {"E002", "E003"}
    assert finished["E001"]["files"] > 0 and finished["E001"]["flagged"] == 0
    assert "cannot read the evidence" in failed["E002"]["reason"]
    assert "no such image" in failed["E003"]["reason"]
    assert events[-1]["exit_code"] == 4 and events[-1]["failed"] == 2
    assert any(e["event"] == "report_written" for e in events)
    assert (tmp_path / "reports" / "lab.csv").exists()
    case = tmp_path / "cases" / "lab.sqlite"
    conn = sqlite3.connect(case)
    status = dict(conn.execute("SELECT evidence_id, scan_status FROM evidence").fetchall())
    actions = [r[0] for r in conn.execute("SELECT action FROM custody_log ORDER BY seq")]
    number = conn.execute("SELECT case_number FROM case_info").fetchone()[0]
    conn.close()
    assert status == {"E001": "complete", "E002": "failed"}
    assert number == "2026-LAB-7"
    assert "batch_started" in actions and "batch_item_failed" in actions
    assert "evidence_failed" in actions and actions[-1] != "batch_started"
    (log,) = case.parent.glob("lab.sqlite.batch-*.log")
    lines = log.read_text().splitlines()
    assert lines and all(line.split(" ", 1)[0].endswith("Z") for line in lines)
    assert any("evidence_failed" in line and "E003" in line for line in lines)


def test_check_validates_without_running(
    evidence: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = write_jobs(
        tmp_path,
        f"""
        [[case]]
        path = "c.sqlite"
          [[case.evidence]]
          path = "{evidence["good"]}"
    """,
    )
    assert main(["batch", "--check", str(jobs)]) == 0
    assert "valid" in capsys.readouterr().out
    assert not (tmp_path / "c.sqlite").exists()
    bad = write_jobs(
        tmp_path,
        """
        [[case]]
        path = "c.sqlite"
        wokers = 2
          [[case.evidence]]
          id = "E1"
          [[case.report]]
          format = "no-such-format"
          output = "r.out"
    """,
    )
    assert main(["batch", "--check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 4" in err and "wokers" in err  # every problem, with its line
    assert "no-such-format" in err and "path" in err


def hold_lock(case: Path, command: str) -> subprocess.Popen[str]:
    """Another process holding the case's write lock (for a minute, or until killed)."""
    return subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom examkit.locking import case_lock\n"
         "with case_lock(sys.argv[1], sys.argv[2]):\n    print('locked', flush=True)\n"
         "    time.sleep(60)\n", str(case), command],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def _batch_process(jobs: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [EXAMKIT, "batch", str(jobs), "--json", "--progress-interval", "0.1", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        env={**os.environ, "EXAMKIT_HASHSETS": str(jobs.parent / "library")},
    )  # fmt: skip


def test_a_killed_batch_resumes_to_the_same_database(fixture_images: Path, tmp_path: Path) -> None:
    images = [fixture_images / n for n in ("fat16.raw", "ntfs.raw", "ext4.raw")]
    body = 'workers = 1\nverify = false\n[[case]]\npath = "{case}"\n' + "".join(
        f'[[case.evidence]]\npath = "{p}"\nid = "E{i}"\n' for i, p in enumerate(images, 1)
    )
    whole_dir, killed_dir = tmp_path / "whole", tmp_path / "killed"
    for folder in (whole_dir, killed_dir):
        folder.mkdir()
        write_jobs(folder, body.format(case=folder / "case.sqlite"))
    whole = _batch_process(whole_dir / "jobs.toml")
    assert whole.wait(120) == 0, whole.stderr.read() if whole.stderr else ""

    run = _batch_process(killed_dir / "jobs.toml")
    assert run.stdout is not None
    killed_at = None
    for line in run.stdout:  # kill -9 once the second item's streams are hashed, before it ends
        event = json.loads(line)
        mid_item = event["event"] == "progress" and event["evidence_id"] == "E2"
        if mid_item and event["phase"] == "hashing" and event["files_done"] > 0:
            killed_at = event
            os.kill(run.pid, signal.SIGKILL)
            break
        if event["event"] == "evidence_finished" and event["evidence_id"] == "E2":
            killed_at = event  # too fast to catch mid-item: stop between items
            os.kill(run.pid, signal.SIGKILL)
            break
    run.wait(30)
    assert killed_at is not None and run.returncode == -signal.SIGKILL
    conn = sqlite3.connect(killed_dir / "case.sqlite")
    partial = dict(conn.execute("SELECT evidence_id, scan_status FROM evidence").fetchall())
    conn.close()
    assert partial.get("E1") == "complete" and "E3" not in partial  # stopped half-way

    again = _batch_process(killed_dir / "jobs.toml")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    events = events_of(out)
    skipped = {e["evidence_id"] for e in events if e["event"] == "evidence_skipped"}
    finished = {e["evidence_id"] for e in events if e["event"] == "evidence_finished"}
    assert "E1" in skipped and "E3" in finished and "E1" not in finished
    whole_case, killed_case = whole_dir / "case.sqlite", killed_dir / "case.sqlite"
    assert comparable_rows(killed_case, SKIP_IDS) == comparable_rows(whole_case, SKIP_IDS)
    conn = sqlite3.connect(killed_case)
    e1_runs = conn.execute(
        "SELECT count(*) FROM runs WHERE evidence_ids LIKE '%\"E1\"%'"
    ).fetchone()[0]
    conn.close()
    assert e1_runs == 1  # nothing repeated


def test_a_second_batch_on_the_same_case_is_refused(
    evidence: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = tmp_path / "busy.sqlite"
    jobs = write_jobs(
        tmp_path,
        f"""
        [[case]]
        path = "{case}"
          [[case.evidence]]
          path = "{evidence["good"]}"
    """,
    )
    holder = hold_lock(case, "batch")
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        code = main(["batch", str(jobs), "--json"])
        assert time.monotonic() - started < 10  # refused at once, not waiting
    finally:
        holder.kill()
        holder.wait()
    captured = capsys.readouterr()
    assert code == 1
    (error,) = [e for e in events_of(captured.out) if e["event"] == "error"]
    assert "being written by another examkit process" in error["message"]
    assert f"pid {holder.pid}" in error["message"]
    assert not case.exists()  # nothing was written


def test_a_second_scan_on_a_case_in_use_is_refused(
    evidence: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = tmp_path / "busy.sqlite"
    holder = hold_lock(case, "scan")
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        code = main(["scan", str(evidence["good"]), "--case", str(case)])
    finally:
        holder.kill()
        holder.wait()
    assert code == 1
    assert "being written by another examkit process" in capsys.readouterr().err


def test_a_media_hash_mismatch_is_a_failed_item(
    evidence: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = write_jobs(
        tmp_path,
        f"""
        [[case]]
        path = "c.sqlite"
          [[case.evidence]]
          path = "{evidence["good"]}"
          expect = {{ md5 = "{"0" * 32}" }}
    """,
    )
    assert main(["batch", str(jobs), "--json"]) == 4
    events = events_of(capsys.readouterr().out)
    (verified,) = [e for e in events if e["event"] == "evidence_verified"]
    (failed,) = [e for e in events if e["event"] == "evidence_failed"]
    assert verified["result"] == "mismatch" and "mismatch" in failed["reason"]
