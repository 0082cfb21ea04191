"""Hashing follows a running listing: ``Dispatch.follow`` hands out the entries listed so
far, each once, and the results equal a scan that hashed after the listing ended."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from examkit import dispatch, plan
from examkit.case import Case
from examkit.dispatch import Dispatch, hash_pending
from examkit.executors import InlineExecutor
from examkit.intake import resolve_sets
from examkit.isolation import WorkerDied
from examkit.matching import Matcher
from examkit.models import (
    ALLOCATED,
    OK,
    PENDING,
    FileEntry,
    MatchCounts,
    StreamResult,
    StreamTask,
    WorkUnit,
)
from examkit.plan import clear_listing
from examkit.plugins import registry
from examkit.scan import ScanOptions
from tests.conftest import do_scan, query
from tests.test_matching import import_sets, write_nsrl_v3, write_vics2

RESULT = "status, bytes_read, md5, sha1, sha256, mime, extension_mismatch"
RESET = (
    "UPDATE files SET status = 'pending', bytes_read = NULL, md5 = NULL, sha1 = NULL,"
    " sha256 = NULL, mime = NULL, extension_mismatch = NULL, run_id = NULL"
    " WHERE bytes_read IS NOT NULL"
)


class Recording(InlineExecutor):
    """Runs units at once and records, for each, its file ids and whether the listing
    had ended when it was handed out."""

    def __init__(self, listing: Future[Any]) -> None:
        self.listing = listing
        self.units: list[tuple[bool, list[int]]] = []
        self.first = threading.Event()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        (unit,) = args
        self.units.append((self.listing.done(), [t.file_id for t in unit.tasks]))
        self.first.set()
        return super().submit(fn, *args, **kwargs)


def _results(case: Path) -> dict[int, tuple[Any, ...]]:
    """What was recorded of each hashed stream (archive members left out)."""
    rows = query(case, f"SELECT file_id, {RESULT} FROM files WHERE bytes_read IS NOT NULL"
                 " AND parent_file_id IS NULL")  # fmt: skip
    return {r[0]: r[1:] for r in rows}


@pytest.fixture
def relisted(fixture_images: Path, tmp_path: Path) -> tuple[Path, Path, dict[int, Any]]:
    """A scanned case (the reference), and a copy whose hashed streams are pending again
    (archive members removed): the first half visible, the rest 'hidden' as not yet listed."""
    image, reference = fixture_images / "ntfs.raw", tmp_path / "reference.sqlite"
    do_scan(reference, [image], workers=0)
    expected = _results(reference)
    assert len(expected) > 20
    work = tmp_path / "work.sqlite"
    shutil.copy(reference, work)
    conn = sqlite3.connect(work)
    conn.execute("DELETE FROM files WHERE parent_file_id IS NOT NULL")
    conn.execute(RESET)
    ids = [r[0] for r in conn.execute("SELECT file_id FROM files WHERE status = 'pending'")]
    conn.execute(
        "UPDATE files SET status = 'hidden' WHERE status = 'pending' AND file_id > ?",
        (ids[len(ids) // 2],),
    )
    conn.commit()
    conn.close()
    assert sorted(ids) == sorted(expected)
    return image, work, expected


def _dispatch(work: Path, image: Path, listing: Future[Any], **options: Any) -> Any:
    case = Case.open(work)
    (item,) = resolve_sets(case, registry(), [image])
    run_id = query(work, "SELECT max(run_id) FROM runs")[0][0]
    opts = ScanOptions(workers=1, unit_files=4, perceptual=False, **options)
    executor = Recording(listing)
    return case, item, opts, executor, Dispatch(case, run_id, executor, opts, None, Matcher([]))


def _follow_while_listing(
    follower: Dispatch,
    listing: Future[int],
    item: Any,
    opts: ScanOptions,
    work: Path,
    first: threading.Event,
    before_end: threading.Event | None = None,
) -> int:
    """``follow`` while another thread plays the listing: once ``first`` is set (the first
    hand-out) it commits the half not yet listed, then ends (once ``before_end`` is set)."""

    def list_the_rest() -> None:
        first.wait(10)
        conn = sqlite3.connect(work, timeout=30)
        conn.execute("UPDATE files SET status = 'pending' WHERE status = 'hidden'")
        conn.commit()
        conn.close()
        if before_end is not None:
            before_end.wait(10)
        listing.set_result(0)

    thread = threading.Thread(target=list_the_rest)
    thread.start()
    try:
        return int(follower.follow(listing, item, opts))
    finally:
        thread.join()


def test_follow_hands_out_listed_entries_before_the_listing_ends(
    relisted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    image, work, expected = relisted
    # each small unit goes out as it is cut: held back behind a look's large streams, the
    # units cut before the listing ended could be handed out after it, as this thread ends
    # the listing at the first hand-out (``HOLD_UNITS``, tested on its own below)
    monkeypatch.setattr("examkit.dispatch.HOLD_UNITS", 1)
    listing: Future[int] = Future()
    case, item, opts, executor, dispatch = _dispatch(work, image, listing, unit_bytes=1000)

    after = _follow_while_listing(dispatch, listing, item, opts, work, executor.first)
    before = [ids for ended, ids in executor.units if not ended]
    assert before, "nothing was handed out while the listing ran"
    # at most the unit cut as the listing ended and the partial one flushed after it
    assert sum(ended for ended, _ in executor.units) <= 2
    followed = [i for _, ids in executor.units for i in ids]
    assert after == max(followed)  # every entry up to it handed out, none beyond
    assert sorted(followed) == [i for i in sorted(expected) if i <= after]

    handed_out = len(executor.units)
    hash_pending(dispatch, item, opts, after)  # what was pending as the listing ended
    rest = [ids for _, ids in executor.units[handed_out:]]
    assert rest, "everything was handed out in file order"
    handed = [i for _, ids in executor.units for i in ids]
    assert sorted(handed) == sorted(set(handed)) == sorted(expected)  # each once, all
    sizes = dict(query(work, "SELECT file_id, size FROM files"))
    large = [ids[0] for ids in rest if len(ids) == 1 and sizes[ids[0]] >= 1000]
    assert large and large == sorted(large, key=lambda i: -sizes[i])  # largest first
    assert rest[: len(large)] == [[i] for i in large]  # before the small ones
    assert max(sizes[i] for ids in rest for i in ids) == sizes[large[0]]
    case.close()
    assert _results(work) == expected
    assert dispatch.done_files == len(expected)


def test_follow_hands_out_a_large_stream_before_the_small_units_seen_with_it(
    relisted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In one look at what the listing committed, the large streams go out first: a
    worker free now starts the longest job, not a unit of small files ahead of it."""
    image, work, _expected = relisted
    listing: Future[int] = Future()
    case, item, opts, executor, follower = _dispatch(work, image, listing, unit_bytes=1000)
    first_look = query(work, "SELECT max(file_id) FROM files WHERE status = 'pending'")[0][0]
    looks, real = [], dispatch.pending_tasks

    def looking(*args: Any, **kwargs: Any) -> Iterator[StreamTask]:
        looks.append(1)
        if len(looks) == 2:  # the listing ends after the first look
            listing.set_result(0)
        return real(*args, **kwargs)

    monkeypatch.setattr(dispatch, "pending_tasks", looking)
    follower.follow(listing, item, opts)
    case.close()
    sizes = dict(query(work, "SELECT file_id, size FROM files"))
    looked = [ids for _, ids in executor.units if max(ids) <= first_look]
    kinds = ["large" if len(ids) == 1 and sizes[ids[0]] >= 1000 else "small" for ids in looked]
    assert "large" in kinds and "small" in kinds
    assert kinds == sorted(kinds)  # every large unit before every small one


class RecordingLarge(Recording):
    """``Recording`` with a pool's ``submit_large``: records the units given to it."""

    def __init__(self, listing: Future[Any]) -> None:
        super().__init__(listing)
        self.large: list[list[int]] = []

    def submit_large(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        (unit,) = args
        self.large.append([t.file_id for t in unit.tasks])
        return self.submit(fn, *args)


class Slow(RecordingLarge):
    """Hashes one unit at a time, each taking ``seconds``, in a thread of its own: every
    slot is soon taken and ``follow`` waits for one. Records the hand-outs in order."""

    def __init__(self, listing: Future[Any], seconds: float = 0.05) -> None:
        super().__init__(listing)
        self.seconds = seconds
        self.queue: list[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = []
        self.lock = threading.Condition()
        self.large_out = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            with self.lock:
                while not self.queue:
                    self.lock.wait()
                future, fn, args = self.queue.pop(0)
            time.sleep(self.seconds)
            future.set_result(fn(*args))

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        (unit,) = args
        self.units.append((self.listing.done(), [t.file_id for t in unit.tasks]))
        self.first.set()
        future: Future[Any] = Future()
        with self.lock:
            self.queue.append((future, fn, args))
            self.lock.notify()
        return future

    def submit_large(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        future = super().submit_large(fn, *args)
        self.large_out.set()
        return future


def _one_large_beyond(work: Path) -> int:
    """Leaves ``relisted``'s not yet listed half with the one stream as large as its largest
    (its larger already listed streams are set aside: neither pending nor expected)."""
    sizes = dict(query(work, "SELECT file_id, coalesce(size, 0) FROM files"))
    hidden = [r[0] for r in query(work, "SELECT file_id FROM files WHERE status = 'hidden'")]
    big = max(hidden, key=lambda i: (sizes[i], -i))
    conn = sqlite3.connect(work)
    conn.execute("UPDATE files SET status = 'aside' WHERE status IN ('pending', 'hidden')"
                 " AND coalesce(size, 0) >= ? AND file_id != ?", (sizes[big], big))  # fmt: skip
    conn.commit()
    conn.close()
    return big


def test_follow_hands_out_a_large_stream_listed_beyond_its_walk_while_it_waits(
    relisted: Any,
) -> None:
    """The listing commits a large stream while ``follow`` is still handing out, slot by
    slot, the small streams listed before it: the large one goes out at once, ahead of
    them, and is not handed out again when the walk or ``hash_pending`` reaches it."""
    image, work, expected = relisted
    big = _one_large_beyond(work)
    aside = {r[0] for r in query(work, "SELECT file_id FROM files WHERE status = 'aside'")}
    expected = {k: v for k, v in expected.items() if k not in aside}
    sizes = dict(query(work, "SELECT file_id, size FROM files"))
    listed = query(work, "SELECT max(file_id) FROM files WHERE status = 'pending'")[0][0]
    listing: Future[int] = Future()
    case, item, opts, _, _ = _dispatch(work, image, listing, unit_bytes=sizes[big])
    run_id = query(work, "SELECT max(run_id) FROM runs")[0][0]
    executor = Slow(listing)
    follower = Dispatch(case, run_id, executor, opts, None, Matcher([]))

    # the second half is listed soon after the first hand-out; the listing goes on until
    # the large stream is out
    after = _follow_while_listing(follower, listing, item, opts, work, executor.first,
                                  executor.large_out)  # fmt: skip
    order = [ids for _, ids in executor.units]
    position = order.index([big])
    assert executor.large == [[big]]
    # handed out while streams listed well before it (in the first half) waited for a slot
    assert any(max(ids) <= listed for ids in order[position + 1 :])
    assert follower.ahead == {big}
    hash_pending(follower, item, opts, after)
    handed = [i for _, ids in executor.units for i in ids]
    assert sorted(handed) == sorted(set(handed)) == sorted(expected)  # each once, all
    case.close()
    assert _results(work) == expected


def test_a_unit_of_one_large_stream_goes_to_submit_large(relisted: Any) -> None:
    image, work, expected = relisted
    done: Future[int] = Future()
    done.set_result(0)
    case, item, opts, _executor, _ = _dispatch(work, image, done, unit_bytes=1000)
    run_id = query(work, "SELECT max(run_id) FROM runs")[0][0]
    executor = RecordingLarge(done)
    hash_pending(Dispatch(case, run_id, executor, opts, None, Matcher([])), item, opts)
    case.close()
    sizes = dict(query(work, "SELECT file_id, size FROM files"))
    large = [ids for _, ids in executor.units if len(ids) == 1 and sizes[ids[0]] >= 1000]
    assert large and executor.large == large  # those, and only those
    results = _results(work)  # the listed half ("hidden": not listed yet)
    assert results and all(expected[k] == v for k, v in results.items())


def test_follow_stops_when_the_listing_fails(relisted: Any) -> None:
    image, work, expected = relisted
    listing: Future[int] = Future()
    listing.set_exception(RuntimeError("listing crashed"))
    case, item, opts, _, dispatch = _dispatch(work, image, listing)
    after = dispatch.follow(listing, item, opts)
    assert not dispatch.in_flight  # what was handed out is written before the error
    visible = query(work, "SELECT max(file_id) FROM files WHERE status != 'hidden'")[0][0]
    assert after <= visible
    recorded = _results(work)
    case.close()
    assert recorded and all(expected[k] == v for k, v in recorded.items())


def test_clear_listing_removes_files_with_their_matches(
    capsys: pytest.CaptureFixture[str], fixture_images: Path, tmp_path: Path
) -> None:
    bad, good = tmp_path / "vics2.json", tmp_path / "rds.db"
    write_vics2(bad)
    write_nsrl_v3(good)
    import_sets(capsys, (bad, good))
    case_path = tmp_path / "case.sqlite"
    do_scan(case_path, [fixture_images / "ntfs.raw"], workers=1)
    evidence = query(case_path, "SELECT evidence_id FROM evidence")[0][0]
    assert query(case_path, "SELECT count(*) FROM matches")[0][0] > 0
    with Case.open(case_path) as case:  # foreign keys on: matches go before their files
        clear_listing(case, evidence)
    for table in ("matches", "files", "filesystems", "volumes"):
        assert query(case_path, f"SELECT count(*) FROM {table}") == [(0,)], table
    assert query(case_path, "SELECT scan_status FROM evidence") == [("planning",)]


def _listing_then_hashing(progress: Any) -> None:
    """Two batches listed, one unit hashed meanwhile, then the hashing phase's totals
    (which count that unit) and one more unit."""
    progress.phase("listing", "E1", 0, 0)
    progress.listed(3)
    progress.hashed(2, 200)
    progress.listed(4)
    progress.phase("hashing", "E1", 5, 500)
    progress.hashed(3, 300)


def test_batch_progress_counts_what_is_hashed_while_listing() -> None:
    from examkit.batch import _Progress

    events: list[dict[str, Any]] = []
    progress = _Progress(lambda event, **fields: events.append(fields), "c", "E1", 0)
    _listing_then_hashing(progress)
    listing = [e["files_done"] for e in events if e["phase"] == "listing"]
    hashing = [(e["files_done"], e["bytes_done"]) for e in events if e["phase"] == "hashing"]
    assert listing == [0, 3, 7]  # entries add up (a batch is not the running total)
    assert hashing == [(2, 200), (5, 500)]


def test_terminal_progress_counts_what_is_hashed_while_listing() -> None:
    from examkit.cli.scan_cmd import RichProgress

    progress = RichProgress()
    _listing_then_hashing(progress)
    assert (progress.files_done, progress.bytes_done) == (5, 500)
    assert progress.bar.tasks[-1].completed == 500


class DiesOnBatches(Executor):
    """A worker that dies on any unit of several streams; single streams succeed."""

    workers = 1

    def __init__(self) -> None:
        self.retried: list[WorkUnit] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        (unit,) = args
        future: Future[Any] = Future()
        if len(unit.tasks) > 1:
            future.set_exception(WorkerDied("killed by signal 9"))
        else:
            self.retried.append(unit)
            future.set_result([StreamResult(unit.tasks[0].file_id, OK, unit.tasks[0].size)])
        return future


def test_a_unit_retried_file_by_file_keeps_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[list[int]] = []
    monkeypatch.setattr(dispatch, "write_results",
                        lambda case, run, results, matcher: written.append(
                            [r.file_id for r in results]) or MatchCounts())  # fmt: skip
    tasks = tuple(StreamTask(i, "tsk", 0, 60 + i, 128, 0, 10, f"f{i}") for i in (1, 2, 3))
    secret = object()  # stands in for an Unlock (a volume's password)
    unit = WorkUnit("raw", ("/cases/x.raw",), tasks, perceptual=False, archive_depth=1,
                    unlocks=(secret,))  # fmt: skip
    executor = DiesOnBatches()
    run = Dispatch(None, 1, executor, ScanOptions(workers=1), None, None)  # type: ignore[arg-type]
    run.submit(unit)
    run.drain(0)
    assert [u.tasks for u in executor.retried] == [(t,) for t in tasks]
    for retried in executor.retried:  # everything but the tasks is the unit's own
        assert replace(retried, tasks=tasks) == unit
        assert retried.unlocks == (secret,)
    assert sorted(written) == [[1], [2], [3]]


class _Commits:
    """Stands in for a case: records the size of each batch the listing commits."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        yield self

    def executemany(self, sql: str, rows: list[Any]) -> None:
        self.batches.append(len(rows))


def _entry(seq: int, size: int) -> FileEntry:
    return FileEntry(seq, f"/f{seq}", f"f{seq}", None, seq, 128, 0, "file", size, ALLOCATED,
                     PENDING)  # fmt: skip


def test_listing_commits_its_first_entries_and_large_streams_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Workers idle while the walk goes on get work as soon as a unit's worth is listed,
    and a large stream (hashed alone, the scan's longest task) is handed out as soon as
    it is listed, not with the next timed batch (nor more often than
    LARGE_COMMIT_SECONDS: a walk through many large streams is not a commit each)."""
    monkeypatch.setattr(plan, "COMMIT_SECONDS", 3600.0)  # no timed commits in this test
    monkeypatch.setattr(plan, "LARGE_COMMIT_SECONDS", 0.0)
    sizes = [100] * 1000
    sizes[600] = plan.LARGE_STREAM
    case = _Commits()
    count, error = plan._insert_entries(
        case,  # type: ignore[arg-type]
        "E1",
        1,
        1,
        (_entry(i, s) for i, s in enumerate(sizes)),
        None,
    )
    assert (count, error) == (1000, None)
    first, large = plan.FIRST_BATCH, 601 - plan.FIRST_BATCH
    assert case.batches == [first, large, 1000 - first - large]
    monkeypatch.setattr(plan, "LARGE_COMMIT_SECONDS", 3600.0)
    case = _Commits()
    entries = (_entry(i, plan.LARGE_STREAM) for i in range(1000))
    plan._insert_entries(case, "E1", 1, 1, entries, None)  # type: ignore[arg-type]
    assert case.batches == [first, 1000 - first]


def test_results_are_written_whole_whichever_statement_writes_them(relisted: Any) -> None:
    """Plain results (the three digests, no image) go through the shorter UPDATE; results
    with an image or another hasher's digest through the full one. Each row gets exactly
    its own values, the others keep what the listing wrote (NULL)."""
    from examkit.perceptual import ImageResult

    _image, work, _expected = relisted
    ids = [r[0] for r in query(work, "SELECT file_id FROM files WHERE status = 'pending'")][:4]
    digests = {"md5": "1" * 32, "sha1": "2" * 40, "sha256": "3" * 64}
    pdq = ("f" * 64, 88)
    image = ImageResult("ok", None, {"pdq": pdq, "phash": ("a" * 16, None),
                                     "dhash": ("b" * 16, None)}, 640, 480)  # fmt: skip
    results = [
        StreamResult(ids[0], OK, 10, digests, "text/plain", 0),
        StreamResult(ids[1], OK, 20, digests, "image/jpeg", 0, None, image),
        StreamResult(ids[2], OK, 30, {**digests, "crc32": "cafe0001"}, "text/plain"),
        StreamResult(ids[3], "error", 5, {}, None, None, "OSError: cut short"),
    ]
    run_id = query(work, "SELECT max(run_id) FROM runs")[0][0]
    with Case.open(work) as case, case.transaction() as conn:  # as the listing left them
        conn.execute("UPDATE files SET digests = NULL, pdq = NULL, pdq_quality = NULL,"
                     " phash = NULL, dhash = NULL, image_status = NULL, image_width = NULL,"
                     " image_height = NULL, error = NULL")  # fmt: skip
    with Case.open(work) as case:
        dispatch.write_results(case, run_id, results, Matcher([]))
    cols = ("file_id, status, bytes_read, md5, sha1, sha256, mime, extension_mismatch, error,"
            " run_id, digests, pdq, pdq_quality, phash, dhash, image_status, image_width,"
            " image_height")  # fmt: skip
    rows = {r[0]: r[1:] for r in query(work, f"SELECT {cols} FROM files WHERE file_id IN"
                                             f" ({','.join(map(str, ids))})")}  # fmt: skip
    d = ("1" * 32, "2" * 40, "3" * 64)
    none_image = (None,) * 7
    assert rows[ids[0]] == ("ok", 10, *d, "text/plain", 0, None, run_id, None, *none_image)
    assert rows[ids[1]] == ("ok", 20, *d, "image/jpeg", 0, None, run_id, None, "f" * 64, 88,
                            "a" * 16, "b" * 16, "ok", 640, 480)  # fmt: skip
    assert rows[ids[2]][:9] == ("ok", 30, *d, "text/plain", None, None, run_id)
    assert json.loads(rows[ids[2]][9]) == {"crc32": "cafe0001"}
    assert rows[ids[2]][10:] == none_image
    assert rows[ids[3]] == ("error", 5, None, None, None, None, None, "OSError: cut short",
                            run_id, None, *none_image)  # fmt: skip
