"""Scan orchestration: plan in the parent, hash in workers, one writer records it all."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import custody, digest_indexes
from .case import Case
from .clock import utc_now
from .dispatch import Dispatch, hash_pending, submit_large
from .errors import EvidenceError, ExamkitError, UsageError
from .evidence import ALGORITHMS, open_media, verify
from .executors import ClusterExecutor, default_workers, local_executor, map_path
from .filetype import typing_used
from .hashing import digests_used
from .hashsets import Library
from .intake import EvidenceSet, record_evidence, resolve_sets
from .integrity import StateAhead
from .interrupts import RunSignals
from .isolation import STALL_SECONDS, IsolatedPool, WorkerDied
from .layers import Unlock
from .locking import case_lock
from .matching import Matcher, NearOptions, match_case, use_sets
from .models import (
    EvidenceSummary,
    HashSetInfo,
    ScanSummary,
    Verification,
)
from .plan import (
    FIRST_BATCH,
    LARGE_STREAM,
    ListingOptions,
    clear_listing,
    mark_snapshot_copies,
    plan_evidence,
)
from .plugins import Registry, registry
from .query import grouped_counts
from .runs import check_unchanged, finish_run, start_run, tool_versions_ahead
from .worker import hash_whole_media, list_evidence


class ScanInterrupted(ExamkitError):
    """The scan was stopped by Ctrl-C or SIGTERM; what was done is recorded."""


class Progress(Protocol):
    """What the scan reports as it goes (the CLI draws it; the library draws nothing).

    ``listed`` and ``hashed`` give counts since the last call. Hashing starts on what is
    listed while the listing goes on, so ``hashed`` may come in the listing phase; the
    totals of the hashing phase include what was hashed then."""

    def phase(self, name: str, evidence_id: str, files: int, nbytes: int) -> None: ...
    def listed(self, entries: int) -> None: ...
    def hashed(self, files: int, nbytes: int) -> None: ...
    def matched(self, flagged: int, known_good: int) -> None: ...


@dataclass
class ScanOptions:
    workers: int = field(default_factory=default_workers)
    verify_media: bool = True
    confirm_media: bool = True  # hash the media again at the end: unchanged during the run
    resume: bool = False
    unit_bytes: int = LARGE_STREAM  # a stream this large is a unit of its own
    unit_files: int = FIRST_BATCH
    stall_seconds: float = STALL_SECONDS  # a worker silent this long is stopped (hung in TSK)
    archive_depth: int = 3  # archives inside archives expanded this deep (0: not expanded)
    cluster: str | None = None  # Dask scheduler address; None: local processes
    path_map: tuple[tuple[str, str], ...] = ()  # (LOCAL, REMOTE) prefixes for cluster workers
    hashsets: tuple[str, ...] | None = None  # None: every set in the library
    hashset_dir: str | None = None  # None: the default library
    perceptual: bool = True  # PDQ, pHash, dHash of every image (off: --no-perceptual)
    near: NearOptions = field(default_factory=NearOptions)  # perceptual matching thresholds
    unlocks: tuple[Unlock, ...] = field(default=(), repr=False)  # --unlock: secrets, memory only
    shadow_copies: bool = False  # walk every Volume Shadow Copy of NTFS volumes
    fs_backends: tuple[tuple[str, str], ...] = ()  # --fs-backend: (volume or "*", walker)


def scan(
    case_path: Path,
    images: Sequence[Path],
    examiner: str | None = None,
    evidence_id: str | None = None,
    expected: dict[str, str] | None = None,
    description: str | None = None,
    options: ScanOptions | None = None,
    progress: Progress | None = None,
    argv: Sequence[str] | None = None,
) -> ScanSummary:
    """Scan image files into a case (created if missing); see docs/cli.md ``scan``."""
    options = options or ScanOptions()
    tool_versions_ahead()  # recorded when the run opens; mostly waits, done meanwhile
    reg = registry()
    started = time.monotonic()
    # The executor first: local workers start (an interpreter importing the evidence
    # libraries) while this process opens the case and plans the run.
    executor: Executor = (
        ClusterExecutor(options.cluster)
        if options.cluster
        else local_executor(options.workers, options.stall_seconds)
    )
    try:
        return _scan(case_path, images, examiner, evidence_id, expected, description, options,
                     progress, argv, reg, started, executor)  # fmt: skip
    finally:
        executor.shutdown(wait=False, cancel_futures=True)  # a no-op once shut down


def _scan(
    case_path: Path,
    images: Sequence[Path],
    examiner: str | None,
    evidence_id: str | None,
    expected: dict[str, str] | None,
    description: str | None,
    options: ScanOptions,
    progress: Progress | None,
    argv: Sequence[str] | None,
    reg: Registry,
    started: float,
    executor: Executor,
) -> ScanSummary:
    # Signals are held while the run is opened or closed, and while the case is closed after
    # it: a Ctrl-C then must not undo (or misreport) what the run recorded.
    with RunSignals() as signals:
        signals.release()  # until the run is opened, a signal stops the command at once
        with case_lock(case_path, "scan"), Case.open_or_create(case_path, examiner) as case:
            case.mark_stale_runs()
            check_unchanged(case)
            sets = resolve_sets(case, reg, images, evidence_id)
            if expected and len(sets) > 1:
                raise UsageError("--expect applies to one evidence item",
                                 "scan the sets one at a time")  # fmt: skip
            todo = _select(case, sets, options.resume)
            library = Library(Path(options.hashset_dir) if options.hashset_dir else None)
            infos = library.select(list(options.hashsets) if options.hashsets is not None else None)
            failures: list[str] = []
            signals.hold()  # held whenever the run is opened or closed
            run_id, matcher = _start_run(case, reg, examiner, sets, options, argv, infos)
            ahead: StateAhead | None = None
            try:
                signals.release()
                for item in todo:
                    try:
                        _scan_one(case, reg, run_id, item, executor, options, examiner,
                                  description, expected or {}, progress, matcher)  # fmt: skip
                    except EvidenceError as exc:
                        failures.append(f"{item.evidence_id}: {exc.message}")
                        _evidence_failed(case, run_id, item, exc, examiner)
                # Every result is written: the state the run ends with is read in another
                # thread while this one builds the digest indexes again (when hashing did not:
                # no index is part of the state), asks the workers how they worked, waits for
                # them to stop and sums up the results (bench image, from the last result to
                # the command's return: 0.16-0.17 -> 0.09-0.13 s; 100,000 small files: the
                # indexes 0.29 s, the state ~0.3 s, now side by side). Nothing changes the
                # results after this.
                ahead = StateAhead(case.conn, case.path)
                # the last item's, one that failed while hashing, or one a stopped scan left
                digest_indexes.restore(case)
                typed_by = workers_typing(executor)
                digested_by = workers_answer(executor, digests_used)
                executor.shutdown(wait=True)  # still interruptible: a cluster may be slow
                summaries = tuple(_summary(case, item.evidence_id) for item in sets)
                signals.hold()
                status = "failed" if failures else "complete"
                _finish_run(case, run_id, status, examiner, "; ".join(failures) or None,
                            typed_by, digested_by, ahead)  # fmt: skip
            except KeyboardInterrupt:
                signals.hold()
                executor.shutdown(wait=False, cancel_futures=True)
                # the state read ahead, if nothing was written since (else digested again)
                _finish_run(case, run_id, "interrupted", examiner, "interrupted by signal",
                            ahead=ahead)  # fmt: skip
                raise ScanInterrupted(
                    "scan interrupted; everything hashed so far is recorded",
                    "run the same command with --resume to finish it",
                ) from None
            except BaseException as exc:
                signals.hold()
                executor.shutdown(wait=False, cancel_futures=True)
                _finish_run(case, run_id, "failed", examiner, f"{type(exc).__name__}: {exc}",
                            ahead=ahead)  # fmt: skip
                raise
            finally:
                if ahead is not None:  # its connection is closed before the case is
                    ahead.close()
    return ScanSummary(str(case_path), run_id, status, time.monotonic() - started, summaries,
                       tuple(failures))  # fmt: skip


def _select(case: Case, sets: Sequence[EvidenceSet], resume: bool) -> list[EvidenceSet]:
    """The sets this run must work on; refuses to silently redo or skip work."""
    todo = []
    for item in sets:
        row = case.evidence(item.evidence_id)
        status = row["scan_status"] if row else "not_scanned"
        if status == "complete":
            continue  # already done: nothing is hashed twice
        if status in ("planning", "hashing") and not resume:
            raise UsageError(
                f"evidence {item.evidence_id} has an unfinished scan",
                "add --resume to finish it without rehashing what is recorded",
            )
        todo.append(item)
    return todo


def _start_run(
    case: Case,
    reg: Registry,
    examiner: str | None,
    sets: Sequence[EvidenceSet],
    options: ScanOptions,
    argv: Sequence[str] | None,
    hashsets: Sequence[HashSetInfo],
) -> tuple[int, Matcher]:
    resumed = None
    if options.resume:
        row = case.conn.execute(
            "SELECT max(run_id) FROM runs WHERE command = 'scan' AND status = 'interrupted'"
        ).fetchone()
        resumed = row[0] if row else None
    with case.transaction() as conn:
        run_id = start_run(
            conn,
            "resumed" if resumed else "scan",
            examiner,
            argv,
            {**asdict(options), "unlocks": [u.describe() for u in options.unlocks]},
            [s.evidence_id for s in sets],
            reg.versions(),
            {"resumed_run_id": resumed, "hashsets": [h.name for h in hashsets]},
        )
        matcher = Matcher(use_sets(conn, hashsets, int(run_id), examiner), options.near)
    return int(run_id), matcher


def _scan_one(
    case: Case,
    reg: Registry,
    run_id: int,
    item: EvidenceSet,
    executor: Executor,
    options: ScanOptions,
    examiner: str | None,
    description: str | None,
    expected: dict[str, str],
    progress: Progress | None,
    matcher: Matcher,
) -> None:
    job: Future[int] | None = None
    with _reading(), open_media(item.container, item.paths) as media:
        row = case.evidence(item.evidence_id)
        if row is None:
            record_evidence(case, item, media, description, expected, examiner)
            row = case.evidence(item.evidence_id)
            assert row is not None
        elif expected:
            _set_expected(case, item.evidence_id, expected, examiner)
        if not row["planned"]:
            if progress:
                progress.phase("listing", item.evidence_id, 0, 0)
            listing = ListingOptions(options.unlocks, options.shadow_copies, options.fs_backends,
                                     examiner)  # fmt: skip
            if isinstance(executor, IsolatedPool):  # TSK walks corrupt metadata in a worker
                clear_listing(case, item.evidence_id)
                job = executor.submit(list_evidence, str(case.path), item.evidence_id,
                                      item.container.name, tuple(str(p) for p in item.paths),
                                      listing)  # fmt: skip
                matcher.prepare(options.perceptual)  # while the listing's first entries go in
            else:
                plan_evidence(case, reg, item.evidence_id, media, progress, listing)
    dispatch = Dispatch(case, run_id, executor, options, progress, matcher)
    dispatch.defer_after = digest_indexes.threshold(case, item.evidence_id)
    after = 0
    if job is not None:  # hashing starts on what is listed while the listing goes on
        after = dispatch.follow(job, item, options)
        with _reading():
            _listing_ended(job, dispatch.listed, progress)
    paths = tuple(map_path(str(p), options.path_map) for p in item.paths)
    media_job: Future[dict[str, str]] | None = None
    if options.verify_media:  # verified as the run starts, read alongside the hashing
        media_job = submit_large(executor)(hash_whole_media, item.container.name, paths)
    if options.resume and matcher:  # streams hashed by the interrupted run
        counts = match_case(case, matcher, run_id, item.evidence_id, before_run=run_id)
        if progress and (counts.flagged or counts.known_good):
            progress.matched(counts.flagged, counts.known_good)
    hash_pending(dispatch, item, options, after)
    if options.shadow_copies:
        if dispatch.deferred:  # built again before it matches files by SHA-256
            digest_indexes.restore(case)
        mark_snapshot_copies(case, item.evidence_id)
    if media_job is not None:
        with _reading():
            computed = media_job.result()
        _record_verification(case, item.evidence_id, computed, examiner, "start")
        if options.confirm_media:  # and confirmed unchanged as it ends
            with _reading():
                again = submit_large(executor)(hash_whole_media, item.container.name, paths,
                                        _confirming(case, item.evidence_id)).result()  # fmt: skip
            _record_verification(case, item.evidence_id, again, examiner, "end")
    with case.transaction() as conn:
        conn.execute(
            "UPDATE evidence SET scan_status = 'complete' WHERE evidence_id = ?",
            (item.evidence_id,),
        )


def _set_expected(
    case: Case, evidence_id: str, expected: dict[str, str], actor: str | None
) -> None:
    with case.transaction() as conn:
        for algo, value in expected.items():
            conn.execute(
                f"UPDATE evidence SET acquisition_{algo} = ?, acquisition_source ="
                " CASE WHEN acquisition_source IN ('container', 'container+examiner')"
                " THEN 'container+examiner' ELSE 'examiner' END WHERE evidence_id = ?",
                (value, evidence_id),
            )
        custody.append(
            conn, "acquisition_hash_given", actor, {"evidence_id": evidence_id, **expected}
        )


def _listing_ended(job: Future[int], reported: int, progress: Progress | None) -> None:
    """The listing worker's outcome: a crash or hang there fails this evidence item."""
    try:
        listed = job.result()
    except WorkerDied as exc:
        raise EvidenceError(
            f"listing the file systems failed: {exc.reason}",
            "the file-system metadata is corrupt; what was listed before is kept",
        ) from exc
    if progress and listed > reported:  # the entries that are not hashed (folders, ...)
        progress.listed(listed - reported)


@contextmanager
def _reading() -> Iterator[None]:
    """Errors of the image libraries while reading the media (a corrupt or truncated image)
    fail this evidence item with one line, not the whole run with a traceback."""
    try:
        yield
    except (ExamkitError, KeyboardInterrupt, BrokenProcessPool):
        raise
    except Exception as exc:
        if type(exc).__name__ == "KilledWorker":
            raise
        lines = [ln.strip(" '\"") for ln in str(exc).replace("\\n", "\n").splitlines()]
        first = next((ln for ln in lines if ln), type(exc).__name__).split(". ")[0]  # a sentence
        raise EvidenceError(
            f"cannot read the evidence: {first[:200]}",
            "the image may be corrupt or truncated: check it (ewfverify, the acquisition log)",
        ) from exc


def _confirming(case: Case, evidence_id: str) -> tuple[str, ...]:
    """The digest that confirms the media unchanged as a run ends: SHA-256 alone (the
    fastest of the three here, and collision-resistant) when the start recorded it; an
    end pass bound by MD5 would take more than twice as long."""
    row = case.evidence(evidence_id)
    return ("sha256",) if row is not None and row["media_sha256"] else ()


def _record_verification(
    case: Case, evidence_id: str, computed: dict[str, str], actor: str | None, stage: str
) -> None:
    """Compare media hashes with the record: at ``start`` with the acquisition hashes (and
    the media hashes of an earlier run), at ``end`` with the hashes taken at the start."""
    row = case.evidence(evidence_id)
    assert row is not None
    recorded = {a: row[f"media_{a}"] for a in ALGORITHMS if row[f"media_{a}"]}
    if stage == "end":
        result = verify(computed, recorded)
        if result.result == "match":
            how = ", ".join(a for a in ALGORITHMS if a in result.computed and a in result.expected)
            detail = f"media unchanged during the run ({how} as at the start)"
            result = Verification("match", result.computed, result.expected, detail)
    else:
        expected = {a: row[f"acquisition_{a}"] for a in ALGORITHMS if row[f"acquisition_{a}"]}
        result = verify(computed, expected)
        changed = [a for a, v in recorded.items() if computed.get(a) != v]
        if changed:
            result = Verification("mismatch", result.computed, recorded,
                                  f"media {changed[0]} differs from an earlier run")  # fmt: skip
    with case.transaction() as conn:
        if not recorded:
            conn.execute(
                "UPDATE evidence SET media_md5 = ?, media_sha1 = ?, media_sha256 = ?"
                " WHERE evidence_id = ?",
                (computed.get("md5"), computed.get("sha1"), computed.get("sha256"), evidence_id),
            )
        if stage == "start" or result.result == "mismatch":
            conn.execute(
                "UPDATE evidence SET verification = ?, verification_detail = ?, verified_utc = ?"
                " WHERE evidence_id = ?",
                (result.result, result.detail, utc_now(), evidence_id),
            )
        custody.append(
            conn,
            "evidence_verified",
            actor,
            {
                "evidence_id": evidence_id,
                "stage": stage,
                "result": result.result,
                "computed": dict(result.computed),
                "expected": dict(result.expected),
                "detail": result.detail,
            },
        )


def _evidence_failed(
    case: Case, run_id: int, item: EvidenceSet, exc: ExamkitError, actor: str | None
) -> None:
    with case.transaction() as conn:
        conn.execute(
            "UPDATE evidence SET scan_status = 'failed' WHERE evidence_id = ?"
            " AND scan_status != 'complete'",
            (item.evidence_id,),
        )
        custody.append(
            conn,
            "evidence_failed",
            actor,
            {"run_id": run_id, "evidence_id": item.evidence_id, "error": exc.message},
        )


def _counts(case: Case, run_id: int) -> dict[str, Any]:
    rows = case.conn.execute(
        "SELECT status, count(*), coalesce(sum(bytes_read), 0) FROM files WHERE run_id = ?"
        " GROUP BY status",
        (run_id,),
    ).fetchall()
    flagged, known_good = case.conn.execute(
        "SELECT count(DISTINCT m.file_id) FILTER (WHERE m.alert = 1),"
        " count(DISTINCT m.file_id) FILTER (WHERE m.kind = 'known_good')"
        " FROM matches m WHERE m.run_id = ?",
        (run_id,),
    ).fetchone()
    return {
        "hashed_by_status": {s: n for s, n, _ in rows},
        "bytes_hashed": sum(b for _, _, b in rows),
        "flagged_files": flagged,
        "known_good_files": known_good,
    }


def workers_typing(executor: Executor) -> str:
    """How the workers typed heads (``filetype.typing_used``), as they report it: every
    worker of a cluster, one of a local pool (all fork from one preloaded server), this
    process inline. The run's ``tool_versions`` are the parent's; this is what did it."""
    return workers_answer(executor, typing_used)


def workers_answer(executor: Executor, question: Callable[[], str]) -> str:
    """The workers' answers to ``question`` (``typing_used``, ``digests_used``), as
    ``workers_typing`` asks them; distinct answers joined with ``; ``."""
    try:
        client = getattr(executor, "client", None)  # a Dask cluster: ask every worker
        if client is not None:
            answers = {str(a) for a in client.run(question).values()}
        else:
            answers = {str(executor.submit(question).result(timeout=TYPING_TIMEOUT))}
    except Exception as exc:  # the record of it never fails the run
        return f"unknown ({type(exc).__name__}: {exc})"
    return "; ".join(sorted(answers)) or "unknown (no worker answered)"


TYPING_TIMEOUT = 60  # seconds for a worker to say how it typed


def _finish_run(case: Case, run_id: int, status: str, actor: str | None, error: str | None,
                typed_by: str | None = None, digested_by: str | None = None,
                ahead: StateAhead | None = None) -> None:  # fmt: skip
    counts = _counts(case, run_id)
    if typed_by is not None:
        counts["typed_by"] = typed_by
    if digested_by is not None:
        counts["digested_by"] = digested_by
    finish_run(case, run_id, status, actor, error, counts, ahead)


def _summary(case: Case, evidence_id: str) -> EvidenceSummary:
    row = case.evidence(evidence_id)
    if row is None:
        return EvidenceSummary(evidence_id, "", 0, 0, 0, 0, 0, 0, {}, {}, "not_checked")
    q = case.conn.execute
    (volumes,) = q("SELECT count(*) FROM volumes WHERE evidence_id = ?", (evidence_id,)).fetchone()
    fs_ok, fs_err = q(
        "SELECT coalesce(sum(status = 'ok'), 0), coalesce(sum(status != 'ok'), 0)"
        " FROM filesystems WHERE evidence_id = ?",
        (evidence_id,),
    ).fetchone()
    files, nbytes, flagged, known_good = q(
        "SELECT count(*), coalesce(sum(bytes_read), 0), coalesce(sum(flagged), 0),"
        " coalesce(sum(known_good), 0) FROM files WHERE evidence_id = ?",
        (evidence_id,),
    ).fetchone()
    return EvidenceSummary(
        evidence_id=evidence_id,
        container=row["container"],
        media_size=row["media_size"],
        volumes=volumes,
        filesystems=fs_ok,
        filesystem_errors=fs_err,
        files=files,
        bytes_hashed=nbytes,
        by_status=grouped_counts(case, "status", evidence_id),
        by_state=grouped_counts(case, "state", evidence_id),
        verification=row["verification"],
        verification_detail=row["verification_detail"] or "",
        flagged=flagged,
        known_good=known_good,
        locked=tuple(
            f"volume {idx}: {kind} {' '.join(json.loads(ids).values()) if ids else ''}".rstrip()
            for idx, kind, ids in q(
                "SELECT idx, layer_type, identifiers FROM volumes WHERE evidence_id = ?"
                " AND locked = 1 ORDER BY idx",
                (evidence_id,),
            )
        ),
    )


def summary_json(summary: ScanSummary) -> str:
    return json.dumps(asdict(summary), indent=2, sort_keys=True)
