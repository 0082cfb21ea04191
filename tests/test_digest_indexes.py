"""The digest indexes are set aside while a scan hashes, and always built again."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from examkit import digest_indexes, dispatch, scan
from examkit.errors import EvidenceError
from tests.conftest import do_scan, query

RESULT = "file_id, status, bytes_read, md5, sha1, sha256, mime, extension_mismatch"


def _index_sql(case: Path) -> dict[str, str]:
    rows = query(case, "SELECT name, sql FROM sqlite_master WHERE type = 'index'")
    return {name: sql for name, sql in rows if name in digest_indexes.DIGEST_INDEXES}


@pytest.fixture
def drops(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each drop, as the number of digest indexes the case had just before it."""
    seen: list[int] = []
    real = digest_indexes.drop

    def spy(case: Any) -> None:
        seen.append(3 - len(digest_indexes.missing(case.conn)))
        real(case)

    monkeypatch.setattr(digest_indexes, "drop", spy)
    return seen


def test_hashing_writes_without_them_and_they_are_built_again(
    fixture_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drops: list[int]
) -> None:
    image = fixture_images / "ntfs.raw"
    kept, deferred = tmp_path / "kept.sqlite", tmp_path / "deferred.sqlite"
    with monkeypatch.context() as m:  # the reference: indexes kept throughout
        m.setattr(digest_indexes, "threshold", lambda case, evidence_id: 1 << 62)
        do_scan(kept, [image])
    assert drops == []

    missing_at_write: list[int] = []
    real_write = dispatch.write_results

    def write(case: Any, *args: Any) -> Any:
        missing_at_write.append(len(digest_indexes.missing(case.conn)))
        return real_write(case, *args)

    monkeypatch.setattr(dispatch, "write_results", write)
    do_scan(deferred, [image])
    assert drops == [3]  # dropped once, from a case that had all three
    assert missing_at_write and set(missing_at_write) == {3}  # a new case defers at once
    assert _index_sql(deferred) == _index_sql(kept)  # the schema's own definitions
    assert len(_index_sql(kept)) == 3
    sql = f"SELECT {RESULT} FROM files ORDER BY file_id"
    assert query(deferred, sql) == query(kept, sql)
    plan = query(deferred, "EXPLAIN QUERY PLAN SELECT file_id FROM files WHERE sha256 = 'x'")
    assert "files_sha256" in " ".join(str(r) for r in plan)


def test_they_are_built_while_the_last_streams_are_hashed(
    fixture_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once only EARLY_RESTORE streams are left in flight, the indexes are built before
    their results are written; those results then go into the indexes as they are
    written. With every stream counted as "few", the restore comes before any result."""
    image = fixture_images / "ntfs.raw"
    kept = tmp_path / "kept.sqlite"
    with monkeypatch.context() as m:
        m.setattr(digest_indexes, "threshold", lambda case, evidence_id: 1 << 62)
        do_scan(kept, [image])
    events: list[str] = []
    real_write, real_restore = dispatch.write_results, digest_indexes.restore

    def write(case: Any, *args: Any) -> Any:
        events.append(f"write {len(digest_indexes.missing(case.conn))}")
        return real_write(case, *args)

    def restore(case: Any) -> list[str]:
        built = real_restore(case)
        events.append(f"restore {len(built)}")
        return built

    monkeypatch.setattr(dispatch, "write_results", write)
    monkeypatch.setattr(digest_indexes, "restore", restore)
    monkeypatch.setattr(dispatch, "EARLY_RESTORE", 1 << 30)
    early = tmp_path / "early.sqlite"
    do_scan(early, [image], workers=0)  # one unit: nothing is written before the restore
    assert events[0] == "restore 3"
    assert {e for e in events if e.startswith("write")} == {"write 0"}
    sql = f"SELECT {RESULT} FROM files ORDER BY file_id"
    assert query(early, sql) == query(kept, sql)
    assert _index_sql(early) == _index_sql(kept)


def test_a_small_item_added_to_a_larger_case_keeps_them(
    fixture_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drops: list[int]
) -> None:
    big, small = fixture_images / "ntfs.raw", fixture_images / "iso9660.raw"
    do_scan(tmp_path / "a.sqlite", [big])
    do_scan(tmp_path / "b.sqlite", [small])
    assert drops == [3, 3]  # each into an empty case
    rows_big = query(tmp_path / "a.sqlite", "SELECT count(*) FROM files")[0][0]
    rows_small = query(tmp_path / "b.sqlite", "SELECT count(*) FROM files")[0][0]
    assert rows_small < rows_big
    monkeypatch.setattr(digest_indexes, "SHARE", 1)  # dropped once handed out > other rows
    do_scan(tmp_path / "a.sqlite", [small])  # fewer streams than the case's rows: kept
    assert drops == [3, 3]
    do_scan(tmp_path / "b.sqlite", [big])  # more: dropped
    assert drops == [3, 3, 3]
    for case in ("a.sqlite", "b.sqlite"):
        assert len(_index_sql(tmp_path / case)) == 3


def test_a_scan_builds_what_a_stopped_scan_left_dropped(
    fixture_images: Path, tmp_path: Path
) -> None:
    case = tmp_path / "case.sqlite"
    do_scan(case, [fixture_images / "fat16.raw"])
    before = _index_sql(case)
    conn = sqlite3.connect(case)  # as a scan killed while hashing leaves the case
    for name in digest_indexes.DIGEST_INDEXES:
        conn.execute(f"DROP INDEX {name}")
    conn.commit()
    conn.close()
    assert _index_sql(case) == {}
    do_scan(case, [fixture_images / "fat16.raw"])  # complete already: nothing to hash
    assert _index_sql(case) == before


def test_an_item_that_fails_while_hashing_leaves_them_built(
    fixture_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(run: Any, *args: Any) -> None:
        digest_indexes.drop(run.case)
        run.deferred = True
        raise EvidenceError("the evidence became unreadable", "check the storage")

    monkeypatch.setattr(scan, "hash_pending", failing)
    case = tmp_path / "case.sqlite"
    summary = do_scan(case, [fixture_images / "fat16.raw"])
    assert summary.failures and "unreadable" in summary.failures[0]
    assert len(_index_sql(case)) == 3
