"""Interrupted scans leave a valid case and --resume finishes without rehashing."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from examkit.case import Case
from examkit.errors import UsageError
from examkit.runs import start_run
from examkit.scan import ScanInterrupted, ScanOptions, scan
from tests.conftest import CORPUS, comparable_rows, query

pytestmark = pytest.mark.corpus
IMAGE = CORPUS / "velociraptor-test.ntfs.dd.E01"


class StopAfter:
    """A progress sink that raises KeyboardInterrupt (like Ctrl-C) after N events."""

    def __init__(self, listed: int | None = None, hashed: int | None = None) -> None:
        self.listed_left, self.hashed_left = listed, hashed

    def phase(self, *args: Any) -> None:
        pass

    def listed(self, entries: int) -> None:
        if self.listed_left is not None:
            self.listed_left -= 1
            if self.listed_left < 0:
                raise KeyboardInterrupt

    def matched(self, flagged: int, known_good: int) -> None:
        pass

    def hashed(self, files: int, nbytes: int) -> None:
        if self.hashed_left is not None:
            self.hashed_left -= 1
            if self.hashed_left < 0:
                raise KeyboardInterrupt


RUN_ONLY = frozenset({"run_id"})


@pytest.mark.parametrize("workers", [0, 2])
def test_interrupt_while_hashing_then_resume(corpus, tmp_path: Path, workers: int) -> None:
    reference = tmp_path / "reference.sqlite"
    scan(reference, [IMAGE], options=ScanOptions(workers=workers, unit_files=3))
    case = tmp_path / "case.sqlite"
    opts = ScanOptions(workers=workers, unit_files=3)
    with pytest.raises(ScanInterrupted):
        scan(case, [IMAGE], options=opts, progress=StopAfter(hashed=4))
    assert query(case, "SELECT status FROM runs") == [("interrupted",)]
    done_first = dict(query(case, "SELECT file_id, md5 FROM files WHERE run_id = 1"))
    assert len(done_first) > 0
    assert query(case, "SELECT count(*) FROM files WHERE status = 'pending'")[0][0] > 0

    with pytest.raises(UsageError, match="unfinished scan"):
        scan(case, [IMAGE], options=opts)
    opts.resume = True
    summary = scan(case, [IMAGE], options=opts)
    assert summary.status == "complete"
    # nothing recorded in the first run was hashed again
    first_run = query(case, "SELECT file_id FROM files WHERE run_id = 1")
    assert {fid for (fid,) in first_run} == set(done_first)
    assert query(case, "SELECT status, resumed_run_id FROM runs ORDER BY run_id") == [
        ("interrupted", None), ("complete", 1),
    ]  # fmt: skip
    assert comparable_rows(case, RUN_ONLY) == comparable_rows(reference, RUN_ONLY)


def test_interrupt_while_listing_then_resume(corpus, tmp_path: Path) -> None:
    reference = tmp_path / "reference.sqlite"
    scan(reference, [CORPUS / "tsk-imageformat_mmls_1.E01"], options=ScanOptions(workers=0))
    case = tmp_path / "case.sqlite"
    with pytest.raises(ScanInterrupted):
        scan(case, [CORPUS / "tsk-imageformat_mmls_1.E01"], options=ScanOptions(workers=0),
             progress=StopAfter(listed=1))  # fmt: skip
    assert query(case, "SELECT planned, scan_status FROM evidence") == [(0, "planning")]
    scan(case, [CORPUS / "tsk-imageformat_mmls_1.E01"], options=ScanOptions(workers=0, resume=True))
    assert comparable_rows(case, RUN_ONLY) == comparable_rows(reference, RUN_ONLY)


def test_a_killed_run_is_marked_interrupted(corpus, tmp_path: Path) -> None:
    case = tmp_path / "case.sqlite"
    scan(case, [CORPUS / "tsk-image.dd"], options=ScanOptions(workers=0))
    conn = sqlite3.connect(case)
    # what a SIGKILLed scan leaves: a run still 'running' whose process is gone
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    conn.close()
    with Case.open(case) as c, c.transaction() as tx:  # a run started on the record ...
        run_id = start_run(tx, "scan", "pytest", ["pytest"], {}, [], {})
        tx.execute("UPDATE runs SET pid = ? WHERE run_id = ?", (pid, run_id))  # ... then killed
    with Case.open(case) as c:
        assert c.mark_stale_runs() == [2]
    assert query(case, "SELECT status FROM runs WHERE run_id = 2") == [("interrupted",)]
    assert query(case, "SELECT action FROM custody_log ORDER BY seq DESC LIMIT 1") == [
        ("run_interrupted",)
    ]
