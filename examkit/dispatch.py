"""Work units out to the executor, results back into the case: the scan's hashing phase.

The parent cuts the pending streams into units (``units``), keeps a bounded number in
flight and writes each unit's results, with their hash-set matches, in one transaction
(``Dispatch``). While a listing worker is still recording entries, ``Dispatch.follow``
hands out the entries it has committed so far, so hashing starts before listing ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from . import digest_indexes
from .case import Case, dumps
from .errors import EvidenceError
from .executors import map_path
from .hashing import COLUMN_DIGESTS
from .intake import EvidenceSet
from .isolation import WorkerDied
from .matching import FileDigests, Matcher, write_matches
from .members import image_columns, record_members
from .models import ERROR, OK, MatchCounts, StreamResult, StreamTask, WorkUnit
from .perceptual import near_values
from .worker import hash_unit

if TYPE_CHECKING:
    from .scan import Progress, ScanOptions

PAGE = 5000
# How often newly listed entries are looked for while listing runs. Bench image: its
# 1.2 GB file went out 66-72 ms after the listing's first commit with 0.05 s, 20-27 ms
# with 0.01 (and LARGE_COMMIT_SECONDS 0.005); a look that finds nothing costs a query.
POLL_SECONDS = 0.01

_TASK_COLUMNS = (
    "SELECT f.file_id, fs.walker, fs.offset, f.inode, f.attr_type, f.attr_id, f.size,"
    " coalesce(f.stream, f.name), v.chain FROM files f JOIN filesystems fs"
    " ON fs.filesystem_id = f.filesystem_id JOIN volumes v ON v.volume_id = fs.volume_id"
    " WHERE f.evidence_id = ? AND f.status = 'pending'"
)


def pending_tasks(case: Case, evidence_id: str, below: int, after: int = 0) -> Iterator[StreamTask]:
    """Pending streams smaller than ``below`` bytes with ids above ``after``, in file order
    (read a page at a time)."""
    last = after
    while True:
        rows = case.conn.execute(
            _TASK_COLUMNS
            + " AND coalesce(f.size, 0) < ? AND f.file_id > ? ORDER BY f.file_id LIMIT ?",
            (evidence_id, below, last, PAGE),
        ).fetchall()
        if not rows:
            return
        for row in rows:
            yield StreamTask(*row)
        last = rows[-1][0]


class _Cutter:
    """Cuts streams into work units: a stream of ``unit_bytes`` or more alone, the others
    together up to ``unit_bytes`` or ``unit_files``."""

    def __init__(self, item: EvidenceSet, options: ScanOptions) -> None:
        self.item, self.options = item, options
        self.paths = tuple(map_path(str(p), options.path_map) for p in item.paths)
        self.tasks: list[StreamTask] = []
        self.size = 0

    def unit(self, tasks: Sequence[StreamTask]) -> WorkUnit:
        o = self.options
        return WorkUnit(self.item.container.name, self.paths, tuple(tasks), o.perceptual,
                        o.archive_depth, o.unlocks)  # fmt: skip

    def add(self, task: StreamTask) -> WorkUnit | None:
        """A unit once ``task`` completes one (large streams are units of their own)."""
        if task.size >= self.options.unit_bytes:
            return self.unit((task,))
        self.tasks.append(task)
        self.size += task.size
        if self.size >= self.options.unit_bytes or len(self.tasks) >= self.options.unit_files:
            return self.flush()
        return None

    def flush(self) -> WorkUnit | None:
        if not self.tasks:
            return None
        unit = self.unit(self.tasks)
        self.tasks, self.size = [], 0
        return unit


def units(
    case: Case,
    item: EvidenceSet,
    options: ScanOptions,
    after: int = 0,
    skip: Collection[int] = (),
) -> Iterator[WorkUnit]:
    """Work units of the pending streams with ids above ``after`` (but those in ``skip``,
    already handed out): first each stream of ``unit_bytes`` or more on its own, largest
    first (a big file hashed last would leave the other workers idle while it ends: its
    digests cannot be split), then the others in file order, cut by bytes and by count."""
    cutter = _Cutter(item, options)
    large = case.conn.execute(
        _TASK_COLUMNS + " AND f.size >= ? AND f.file_id > ? ORDER BY f.size DESC, f.file_id",
        (item.evidence_id, options.unit_bytes, after),
    ).fetchall()
    for row in large:
        if row[0] not in skip:
            yield cutter.unit((StreamTask(*row),))
    for task in pending_tasks(case, item.evidence_id, options.unit_bytes, after):
        if task.file_id in skip:
            continue
        unit = cutter.add(task)
        if unit is not None:
            yield unit
    last = cutter.flush()
    if last is not None:
        yield last


# What every result sets; most streams have no other digests and are no image, and their
# other columns stay NULL, as the listing wrote them (a row is written once, from pending):
# binding 10 values instead of 20 costs SQLite and Python 13-19 microseconds a row, not 28-31.
_SET = (
    "status = ?, bytes_read = ?, md5 = ?, sha1 = ?, sha256 = ?, mime = ?,"
    " extension_mismatch = ?, error = ?, run_id = ?"
)
_UPDATE_PLAIN = f"UPDATE files SET {_SET} WHERE file_id = ?"
_UPDATE = (
    f"UPDATE files SET {_SET}, digests = ?, pdq = ?, pdq_quality = ?, phash = ?, dhash = ?,"
    " image_status = ?, image_detail = ?, image_width = ?, image_height = ?, image_hashes = ?"
    " WHERE file_id = ?"
)
_COLUMNS = frozenset(COLUMN_DIGESTS)


def write_results(
    case: Case, run_id: int, results: Sequence[StreamResult], matcher: Matcher
) -> MatchCounts:
    """Record a batch of results and their hash-set matches in one transaction."""
    plain, rows = [], []
    for r in results:
        digests = r.digests
        common = (r.status, r.bytes_read, digests.get("md5"), digests.get("sha1"),
                  digests.get("sha256"), r.mime, r.extension_mismatch, r.error, run_id)  # fmt: skip
        if r.image is None and digests.keys() <= _COLUMNS:
            plain.append((*common, r.file_id))
        else:
            extra = {k: v for k, v in digests.items() if k not in _COLUMNS}
            rows.append((*common, dumps(extra) if extra else None, *image_columns(r.image),
                         r.file_id))  # fmt: skip
    hashed = [
        FileDigests(r.file_id, r.bytes_read, r.digests.get("md5"), r.digests.get("sha1"),
                    r.digests.get("sha256"), *near_values(r.image))
        for r in results
        if r.status == OK
    ]  # fmt: skip
    with case.transaction() as conn:
        conn.executemany(_UPDATE_PLAIN, plain)
        conn.executemany(_UPDATE, rows)
        for r in results:  # archive members become rows of their own, matched like files
            if r.archive is not None:
                hashed += record_members(conn, r.file_id, r.archive, run_id)
        return write_matches(conn, matcher.rows(hashed, run_id) if matcher else [])


def one_large(unit: WorkUnit, unit_bytes: int) -> bool:
    """Whether ``unit`` is one stream of ``unit_bytes`` or more (cut as a unit of its own)."""
    return len(unit.tasks) == 1 and unit.tasks[0].size >= unit_bytes


def submit_large(executor: Executor) -> Callable[..., Future[Any]]:
    """How to hand out a job on one large stream (a unit of its own, the whole media): to a
    pool's reserved worker when it has one (``IsolatedPool.submit_large``)."""
    submit: Callable[..., Future[Any]] = getattr(executor, "submit_large", executor.submit)
    return submit


HOLD_UNITS = 64  # small units one look of ``follow`` holds back behind its large streams


class _LargeAhead:
    """While ``Dispatch.follow`` waits for a free slot, the listing may have committed a
    large stream beyond the entries the walk has reached (a long look holds the walk, or
    every slot is taken): such a stream goes out at once, the largest first, one at a time
    (a pool's reserved worker takes it; it needs no slot), instead of when the walk gets
    there. Its digests are the longest single job: on an image whose 1.2 GB file is listed
    last, it started 0.25 s after the listing had ended. Each look reads only the entries
    listed since the one before (at most every ``POLL_SECONDS``)."""

    def __init__(self, dispatch: Dispatch, cutter: _Cutter) -> None:
        self.dispatch, self.cutter = dispatch, cutter
        self.checked = 0  # every large stream listed up to this id is in ``found``
        self.found: list[StreamTask] = []
        self.running: Future[list[StreamResult]] | None = None
        self.at = 0.0

    def look(self, cursor: int) -> None:
        now = time.monotonic()
        if now - self.at < POLL_SECONDS or (self.running is not None and not self.running.done()):
            return
        self.at = now
        conn, item = self.dispatch.case.conn, self.cutter.item
        (top,) = conn.execute(
            "SELECT coalesce(max(file_id), 0) FROM files WHERE evidence_id = ?"
            " AND status = 'pending'",
            (item.evidence_id,),
        ).fetchone()
        if top > max(self.checked, cursor):
            rows = conn.execute(
                _TASK_COLUMNS + " AND f.size >= ? AND f.file_id > ? AND f.file_id <= ?",
                (item.evidence_id, self.cutter.options.unit_bytes, max(self.checked, cursor), top),
            ).fetchall()
            self.found += [StreamTask(*row) for row in rows]
            self.checked = top
        self.found = [t for t in self.found if t.file_id > cursor]  # else the walk had it
        if self.found:
            task = max(self.found, key=lambda t: (t.size, -t.file_id))
            self.found.remove(task)
            self.dispatch.ahead.add(task.file_id)
            self.running = self.dispatch.submit(self.cutter.unit((task,)), wait_for_slot=False)


class Dispatch:
    """Units in flight on the executor (at most two per worker); each unit's results are
    written as it comes back."""

    def __init__(
        self,
        case: Case,
        run_id: int,
        executor: Executor,
        options: ScanOptions,
        progress: Progress | None,
        matcher: Matcher,
    ) -> None:
        self.case, self.run_id, self.executor = case, run_id, executor
        self.progress, self.matcher = progress, matcher
        slots = getattr(executor, "workers", options.workers)  # a cluster reports its threads
        self.limit = max(2, 2 * max(1, slots))
        self.unit_bytes = options.unit_bytes  # a stream this large is a unit of its own
        self.in_flight: dict[Future[list[StreamResult]], WorkUnit] = {}
        self.done_files = self.done_bytes = 0  # streams hashed and recorded
        self.listed = 0  # entries reported listed by ``follow``
        self.handed = 0  # streams handed out
        # the digest indexes are dropped once more streams than this are handed out
        # (None: kept); ``deferred`` says they were (see examkit/digest_indexes.py)
        self.defer_after: int | None = None
        self.deferred = False
        # large streams ``follow`` handed out before its walk of the listed entries reached
        # them (``_LargeAhead``); left out of what is handed out after
        self.ahead: set[int] = set()
        self._while_waiting: Callable[[], None] | None = None  # run as results are awaited
        self._cursor = 0  # ``follow``'s walk: every pending entry up to it has been seen

    def submit(self, unit: WorkUnit, wait_for_slot: bool = True) -> Future[list[StreamResult]]:
        if wait_for_slot:
            self.drain(self.limit - 1)
        self.handed += len(unit.tasks)
        if self.defer_after is not None and self.handed > self.defer_after:
            digest_indexes.drop(self.case)
            self.defer_after, self.deferred = None, True
        large = one_large(unit, self.unit_bytes)
        # a unit of small streams may wait in a pool's worker behind another (no round trip
        # through the pool's thread between two units: IsolatedPool.submit_short)
        submit = (
            submit_large(self.executor)
            if large
            else getattr(self.executor, "submit_short", self.executor.submit)
        )
        future: Future[list[StreamResult]] = submit(hash_unit, unit)
        self.in_flight[future] = unit
        return future

    def drain(self, block_until: int) -> None:
        """Write results until at most ``block_until`` units are in flight."""
        while len(self.in_flight) > block_until:
            self._next_done()

    def drain_streams(self, block_until: int) -> None:
        """Write results until the units in flight hold at most ``block_until`` streams."""
        while sum(len(u.tasks) for u in self.in_flight.values()) > block_until:
            self._next_done()

    def _next_done(self) -> None:
        if self._while_waiting is None:
            done, _ = wait(self.in_flight, return_when=FIRST_COMPLETED)
        else:  # what to do while it has to wait: at once, then every POLL_SECONDS
            done, _ = wait(self.in_flight, timeout=0, return_when=FIRST_COMPLETED)
            while not done:
                self._while_waiting()
                done, _ = wait(self.in_flight, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
        for future in done:
            self._finished(future, self.in_flight.pop(future))

    def follow(self, listing: Future[Any], item: EvidenceSet, options: ScanOptions) -> int:
        """Hand out, in file order, the entries a running listing has committed, until it
        ends; returns the highest file id walked (every pending entry up to it is in a
        unit; beyond it, only those in ``ahead``). What is pending once the listing has
        ended is left to ``hash_pending``, which hands out the largest streams first. The
        entries walked are reported as listed.

        While it waits for a free slot, a large stream listed beyond the entries it has
        reached goes out at once (``_LargeAhead``); it skips those as it reaches them.

        If the listing failed, everything it listed is handed out, and waited for, before
        this returns (the evidence item then fails, with what was listed hashed)."""
        cutter = _Cutter(item, options)
        self._cursor = 0
        ahead = _LargeAhead(self, cutter)
        self._while_waiting = lambda: ahead.look(self._cursor)
        try:
            return self._follow(listing, item, options, cutter)
        finally:
            self._while_waiting = None

    def _follow(
        self, listing: Future[Any], item: EvidenceSet, options: ScanOptions, cutter: _Cutter
    ) -> int:
        while True:
            # file ids grow with each commit of the one listing writer, so every pending
            # entry up to ``self._cursor`` has been seen, whenever this stops
            ended, seen = listing.done(), 0
            failed = ended and listing.exception() is not None
            if not ended or failed:
                # a large stream goes out as soon as it is seen, before the small units cut
                # ahead of it in the same look: its digests are the longest single job
                # (the bench image's 1.2 GB file waited for a unit of 256 small files)
                small: list[WorkUnit] = []
                for task in pending_tasks(self.case, item.evidence_id, 1 << 62, self._cursor):
                    if not ended and listing.done():
                        ended = True
                        failed = listing.exception() is not None
                        if not failed:
                            break  # the rest goes out largest first
                    self._cursor, seen = task.file_id, seen + 1
                    if self._cursor in self.ahead:
                        continue  # handed out already
                    unit = cutter.add(task)
                    if unit is None:
                        continue
                    if one_large(unit, options.unit_bytes):
                        self.submit(unit)
                    else:
                        small.append(unit)
                        if len(small) >= HOLD_UNITS:  # a long look: hand them out on the way
                            for waiting in small:
                                self.submit(waiting)
                            small = []
                for waiting in small:
                    self.submit(waiting)
            if seen and self.progress:
                self.progress.listed(seen)
            self.listed += seen
            if ended:
                unit = cutter.flush()
                if unit is not None:
                    self.submit(unit)
                if failed:
                    self.drain(0)
                return self._cursor
            wait([*self.in_flight, listing], timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            for future in [f for f in self.in_flight if f.done()]:
                self._finished(future, self.in_flight.pop(future))

    def _finished(self, future: Future[list[StreamResult]], unit: WorkUnit) -> None:
        try:
            results = future.result()
        except WorkerDied as exc:  # a crash or a hang in the evidence libraries
            if len(unit.tasks) > 1:  # retried file by file: only the culprit is lost
                for task in unit.tasks:
                    single = replace(unit, tasks=(task,))
                    self.in_flight[self.executor.submit(hash_unit, single)] = single
                return
            (task,) = unit.tasks
            reason = f"{exc.reason} while reading this file"
            results = [StreamResult(task.file_id, ERROR, 0, error=reason)]
        except Exception as exc:
            # a local worker that died, or a unit that killed every cluster worker
            # it was given to (Dask's KilledWorker, after its allowed failures)
            if not (isinstance(exc, BrokenProcessPool)
                    or type(exc).__name__ == "KilledWorker"):  # fmt: skip
                raise
            raise EvidenceError(
                "a worker process died while reading the evidence",
                "run again with --resume; what was hashed is kept",
            ) from exc
        counts = write_results(self.case, self.run_id, results, self.matcher)
        self.done_files += len(results)
        self.done_bytes += unit.size
        if self.progress:
            self.progress.hashed(len(results), unit.size)
        if self.progress and (counts.flagged or counts.known_good):
            self.progress.matched(counts.flagged, counts.known_good)


EARLY_RESTORE = 16  # streams still in flight when the digest indexes are built again


def hash_pending(
    dispatch: Dispatch, item: EvidenceSet, options: ScanOptions, after: int = 0
) -> None:
    """Hash every pending stream of ``item`` with an id above ``after`` (those up to it are
    already handed out, by ``Dispatch.follow``) and wait for all of them."""
    files, nbytes = dispatch.case.conn.execute(
        "SELECT count(*), coalesce(sum(size), 0) FROM files WHERE evidence_id = ?"
        " AND status = 'pending'",
        (item.evidence_id,),
    ).fetchone()
    if dispatch.progress:  # the totals count what was hashed while listing
        dispatch.progress.phase("hashing", item.evidence_id, files + dispatch.done_files,
                                nbytes + dispatch.done_bytes)  # fmt: skip
    for unit in units(dispatch.case, item, options, after, dispatch.ahead):
        dispatch.submit(unit)
    if dispatch.deferred:
        # Once only a few streams are left (typically a large file whose digests end the
        # scan), the digest indexes are built while they are hashed, not after them with
        # a core idle: their few results then update the indexes as they are written.
        # When none is left, the scan builds them while it reads the run's state.
        dispatch.drain_streams(EARLY_RESTORE)
        if dispatch.in_flight:
            digest_indexes.restore(dispatch.case)
    dispatch.drain(0)
