"""Storage trouble: a full disk, a read-only disk, a file that is not a case, a newer schema.
Each gets one clear error line, and nothing already recorded is damaged."""

from __future__ import annotations

import hashlib
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

EXAMKIT = str(Path(sys.executable).with_name("examkit"))


def examkit(*args: str, limit: int | None = None) -> subprocess.CompletedProcess[str]:
    def small_disk() -> None:  # a file-size limit: writes past it fail as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([EXAMKIT, *args], capture_output=True, text=True, timeout=120,
                          preexec_fn=small_disk if limit else None)  # fmt: skip


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("examkit: error: ") and lines[-1].startswith("hint: "), lines
    return lines[0]


@pytest.fixture
def image(fixture_images: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "fat16.raw"
    shutil.copy(fixture_images / "fat16.raw", copy)
    return copy


@pytest.mark.parametrize("kind", ["other-sqlite", "not-sqlite", "empty"])
def test_a_file_that_is_not_a_case_is_never_changed(image: Path, tmp_path: Path, kind: str) -> None:
    target = tmp_path / "notes.db"
    if kind == "other-sqlite":
        conn = sqlite3.connect(target)
        conn.execute("CREATE TABLE notes (text)")
        conn.execute("INSERT INTO notes VALUES ('an examiner''s other database')")
        conn.commit()
        conn.close()
    else:
        target.write_bytes(b"" if kind == "empty" else b"case notes, not a database\n" * 100)
    before = sha256(target)
    for args in (("scan", str(image), "--case", str(target)), ("info", str(target)),
                 ("verify", str(target)), ("match", str(target))):  # fmt: skip
        result = examkit(*args)
        assert result.returncode != 0
        assert "not an examkit case" in one_error(result) or "no valid case_info" in result.stderr
    assert sha256(target) == before
    assert not list(tmp_path.glob("notes.db-*"))  # no WAL or journal left beside it


def test_a_case_from_a_newer_examkit_is_refused_untouched(image: Path, tmp_path: Path) -> None:
    case = tmp_path / "case.sqlite"
    assert examkit("scan", str(image), "--case", str(case), "--no-perceptual").returncode == 0
    conn = sqlite3.connect(case)
    conn.execute("UPDATE case_info SET schema_version = 99")
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = sha256(case)
    result = examkit("scan", str(image), "--case", str(case))
    assert result.returncode == 1
    assert "schema version 99" in one_error(result)
    assert sha256(case) == before


def test_a_full_disk_is_one_error_and_the_case_recovers(image: Path, tmp_path: Path) -> None:
    case = tmp_path / "case.sqlite"
    result = examkit("scan", str(image), "--case", str(case), "--no-perceptual", limit=150_000)
    assert result.returncode == 1
    assert "cannot write" in one_error(result)
    # what was committed is intact: the database is sound, the custody chain holds once the
    # dead run is closed, and the scan can be finished
    conn = sqlite3.connect(case)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    assert examkit("verify", str(case)).returncode == 0
    finish = examkit("scan", str(image), "--case", str(case), "--no-perceptual", "--resume")
    assert finish.returncode == 0, finish.stderr
    assert examkit("verify", str(case)).returncode == 0


def test_a_read_only_disk_is_one_error(image: Path, tmp_path: Path) -> None:
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "none", str(mount)],
                      capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("mounting a tmpfs needs root and mount rights (this machine has neither)")
    try:
        case = mount / "case.sqlite"
        assert examkit("scan", str(image), "--case", str(case), "--no-perceptual").returncode == 0
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        before = sha256(case)
        result = examkit("scan", str(image), "--case", str(case), "--resume")
        assert result.returncode == 1
        assert "read-only" in result.stderr.lower()
        one_error(result)
        assert sha256(case) == before
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
