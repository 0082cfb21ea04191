"""``batch``: run a jobs file (``examkit.jobs``) unattended: cases, evidence items, reports.

For each case, in file order: take the case's write lock (a second writer is
refused), open or create the case, record a ``batch_started`` custody entry
(jobs file and its SHA-256), then scan each evidence item with ``scan`` and
write the reports. Every step is an event: a dict with ``event`` and ``utc``,
handed to the caller's sink (the CLI prints JSON lines) and written to a log
file per case and batch run, next to the case (``CASE.batch-<UTC>.log``).

Survival and resumption:

- an item whose files are missing or unreadable, or whose scan fails (a
  corrupt image), is recorded as failed (``batch_item_failed`` custody entry,
  or the scan's own ``evidence_failed``) and the next item runs;
- running the same jobs file again skips items already complete (no new run),
  resumes interrupted ones with the scan's ``--resume`` and retries failed
  ones, so an interrupted batch ends with the same result rows as an
  uninterrupted one.

Exit codes (``BatchResult.exit_code``): 0 every item complete; 4 some items
failed; 1 nothing could run (every case locked or unusable).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .case import Case
from .clock import utc_now
from .errors import ExamkitError
from .intake import resolve_sets
from .jobs import CaseJob, EvidenceJob, JobsFile
from .locking import CaseLocked, case_lock
from .matching import NearOptions
from .plugins import registry
from .scan import ScanOptions, scan

EXIT_OK, EXIT_COULD_NOT_RUN, EXIT_SOME_FAILED = 0, 1, 4

Sink = Callable[[dict[str, Any]], None]


@dataclass
class BatchResult:
    complete: int = 0
    skipped: int = 0  # already complete before this run
    failed: int = 0
    cases_not_run: int = 0
    logs: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        ran = self.complete + self.skipped + self.failed
        if ran == 0 and self.cases_not_run:
            return EXIT_COULD_NOT_RUN
        return EXIT_SOME_FAILED if self.failed or self.cases_not_run else EXIT_OK


class _Events:
    """Stamps events, sends them to the sink and to the current case's log file."""

    def __init__(self, sink: Sink | None) -> None:
        self.sink = sink
        self.log: IO[str] | None = None

    def __call__(self, event: str, **fields: Any) -> None:
        record = {"event": event, "utc": utc_now(), **fields}
        if self.log is not None:
            rest = {k: v for k, v in record.items() if k not in ("event", "utc")}
            self.log.write(f"{record['utc']} {event} {json.dumps(rest, sort_keys=True)}\n")
            self.log.flush()
        if self.sink is not None:
            self.sink(record)

    @contextmanager
    def logging_to(self, path: Path) -> Iterator[None]:
        with open(path, "a", encoding="utf-8") as fh:
            self.log = fh
            try:
                yield
            finally:
                self.log = None


class _Progress:
    """The scan's progress protocol, as ``progress`` events at most every ``interval`` s."""

    def __init__(self, events: _Events, case: str, evidence_id: str, interval: float) -> None:
        self.events, self.case, self.evidence_id = events, case, evidence_id
        self.interval = interval
        self.files = self.nbytes = self.done_files = self.done_bytes = 0
        self.early_files = self.early_bytes = 0  # hashed while the listing went on
        self.flagged = self.known_good = 0
        self.phase_name = ""
        self._last = 0.0

    def phase(self, name: str, evidence_id: str, files: int, nbytes: int) -> None:
        self.phase_name, self.files, self.nbytes = name, files, nbytes
        self.done_files, self.done_bytes = (
            (self.early_files, self.early_bytes) if name == "hashing" else (0, 0)
        )
        self.early_files = self.early_bytes = 0
        self._emit(force=True)

    def listed(self, entries: int) -> None:
        self.done_files += entries
        self._emit()

    def hashed(self, files: int, nbytes: int) -> None:
        if self.phase_name == "listing":  # counted in the hashing phase's totals
            self.early_files += files
            self.early_bytes += nbytes
            return
        self.done_files += files
        self.done_bytes += nbytes
        self._emit()

    def matched(self, flagged: int, known_good: int) -> None:
        self.flagged += flagged
        self.known_good += known_good

    def _emit(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        self.events("progress", case=self.case, evidence_id=self.evidence_id,
                    phase=self.phase_name, files_done=self.done_files, files=self.files,
                    bytes_done=self.done_bytes, bytes=self.nbytes, flagged=self.flagged,
                    known_good=self.known_good)  # fmt: skip


def run_batch(
    jobs: JobsFile,
    sink: Sink | None = None,
    progress_interval: float = 5.0,
    argv: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> BatchResult:
    """Run every case of ``jobs``; never raises for one bad item or one locked case."""
    events = _Events(sink)
    result = BatchResult()
    events("batch_started", jobs_file=str(jobs.path), sha256=jobs.sha256,
           cases=len(jobs.cases), evidence=sum(len(c.evidence) for c in jobs.cases))  # fmt: skip
    for problem in jobs.warnings:
        events("warning", line=problem.line, message=problem.message)
    for job in jobs.cases:
        try:
            _run_case(job, jobs, events, result, progress_interval, argv, overrides or {})
        except (CaseLocked, ExamkitError) as exc:
            if isinstance(exc, ExamkitError) and _interrupted(exc):
                raise
            result.cases_not_run += 1
            events("error", case=str(job.path), message=exc.message, hint=exc.hint)
    events("batch_finished", complete=result.complete, skipped=result.skipped,
           failed=result.failed, cases_not_run=result.cases_not_run,
           exit_code=result.exit_code)  # fmt: skip
    return result


def _interrupted(exc: ExamkitError) -> bool:
    from .scan import ScanInterrupted

    return isinstance(exc, ScanInterrupted)


def _run_case(
    job: CaseJob,
    jobs: JobsFile,
    events: _Events,
    result: BatchResult,
    interval: float,
    argv: list[str] | None,
    overrides: dict[str, Any],
) -> None:
    examiner = overrides.get("examiner") or job.examiner
    with case_lock(job.path, "batch"):
        if not job.path.exists():
            Case.create(job.path, job.case_number, job.title, job.agency, examiner).close()
        stamp = utc_now()[:19].replace(":", "") + "Z"  # e.g. 2026-11-23T172807Z
        log = job.path.with_name(f"{job.path.name}.batch-{stamp}.log")
        result.logs.append(str(log))
        with events.logging_to(log):
            events("case_started", case=str(job.path), log=str(log), evidence=len(job.evidence))
            with Case.open(job.path) as case:
                details = {"jobs_file": str(jobs.path), "jobs_sha256": jobs.sha256, "log": str(log)}
                case.log("batch_started", examiner, details)
            counts = {"complete": 0, "skipped": 0, "failed": 0}
            for item in job.evidence:
                outcome = _run_item(job, item, events, interval, argv, overrides, examiner)
                counts[outcome] += 1
            result.complete += counts["complete"]
            result.skipped += counts["skipped"]
            result.failed += counts["failed"]
            for report in job.reports:
                _write_report(job, report.format, report.output, report.show_names, examiner,
                              events)  # fmt: skip
            with Case.open(job.path) as case:
                case.log("batch_finished", examiner, {"jobs_sha256": jobs.sha256, **counts})
            events("case_finished", case=str(job.path), **counts)


def _run_item(
    job: CaseJob,
    item: EvidenceJob,
    events: _Events,
    interval: float,
    argv: list[str] | None,
    overrides: dict[str, Any],
    examiner: str | None,
) -> str:
    """Scan one evidence item; returns ``complete``, ``skipped`` or ``failed``."""
    label = item.evidence_id or item.paths[0].name
    fields = {"case": str(job.path), "evidence_id": label, "paths": [str(p) for p in item.paths]}
    events("evidence_started", **fields)
    try:
        with Case.open(job.path) as case:
            sets = resolve_sets(case, registry(), list(item.paths), item.evidence_id)
            if len(sets) != 1:
                reason = f"the paths form {len(sets)} evidence items; list each on its own"
                return _item_failed(job, item, label, reason, events, examiner)
            found = sets[0]
            row = case.evidence(found.evidence_id)
    except ExamkitError as exc:
        return _item_failed(job, item, label, exc.message, events, examiner)
    fields["evidence_id"] = found.evidence_id
    status = row["scan_status"] if row else "not_scanned"
    if status == "complete":
        events("evidence_skipped", reason="already complete in the case", **fields)
        return "skipped"
    options = _options(job, overrides, resume=row is not None)
    options.unlocks, options.shadow_copies = item.unlocks, item.shadow_copies
    progress = _Progress(events, str(job.path), found.evidence_id, interval)
    try:
        summary = scan(job.path, list(item.paths), examiner, found.evidence_id, item.expect or None,
                       item.description, options, progress, argv)  # fmt: skip
    except ExamkitError as exc:
        if _interrupted(exc):
            events("interrupted", message=exc.message, **fields)
            raise
        return _item_failed(job, item, found.evidence_id, exc.message, events, examiner)
    ev = next((e for e in summary.evidence if e.evidence_id == found.evidence_id), None)
    if summary.status != "complete" or ev is None:
        reason = _run_error(job.path, summary.run_id, found.evidence_id)
        return _item_failed(job, item, found.evidence_id, reason, events, examiner, recorded=True)
    events("evidence_verified", result=ev.verification, detail=ev.verification_detail, **fields)
    if ev.verification == "mismatch":  # hashed and recorded, but the media is not as acquired
        reason = f"media hash mismatch: {ev.verification_detail or 'see examkit verify'}"
        return _item_failed(job, item, found.evidence_id, reason, events, examiner, recorded=True)
    events("evidence_finished", status="complete", run_id=summary.run_id, files=ev.files,
           bytes_hashed=ev.bytes_hashed, filesystems=ev.filesystems,
           filesystem_errors=ev.filesystem_errors, flagged=ev.flagged,
           known_good=ev.known_good, verification=ev.verification,
           seconds=round(summary.seconds, 2), **fields)  # fmt: skip
    return "complete"


def _options(job: CaseJob, overrides: dict[str, Any], resume: bool) -> ScanOptions:
    options = ScanOptions(
        resume=resume,
        verify_media=job.verify,
        hashsets=job.hashsets,
        hashset_dir=str(overrides.get("hashset_dir") or job.hashset_dir or "") or None,
        cluster=overrides.get("cluster") or job.cluster,
        perceptual=job.perceptual,
        near=NearOptions(enabled=job.perceptual),
    )
    workers = overrides.get("workers", job.workers)
    if workers is not None:
        options.workers = workers
    return options


def _run_error(case_path: Path, run_id: int, evidence_id: str) -> str:
    """Why a scan run did not complete (its recorded error, without the evidence id)."""
    with Case.open(case_path) as case:
        row = case.conn.execute("SELECT error FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    text = str(row[0]) if row and row[0] else "the scan did not complete"
    return text.removeprefix(f"{evidence_id}: ")


def _item_failed(
    job: CaseJob,
    item: EvidenceJob,
    label: str,
    reason: str,
    events: _Events,
    examiner: str | None,
    recorded: bool = False,
) -> str:
    """Record a failed item (unless the scan already did) and tell the sink."""
    if not recorded:
        with Case.open(job.path) as case:
            case.log("batch_item_failed", examiner, {"evidence_id": label,
                     "paths": [str(p) for p in item.paths], "reason": reason})  # fmt: skip
    events("evidence_failed", case=str(job.path), evidence_id=label,
           paths=[str(p) for p in item.paths], reason=reason)  # fmt: skip
    return "failed"


def _write_report(
    job: CaseJob, name: str, output: Path, show_names: bool, examiner: str | None, events: _Events
) -> None:
    from .reporting import write_report

    try:
        fmt = registry().get("report_formats", name)
        written = write_report(job.path, fmt, output, show_names, examiner)
    except ExamkitError as exc:
        events("error", case=str(job.path), report=str(output), message=exc.message,
               hint=exc.hint)  # fmt: skip
        return
    events("report_written", case=str(job.path), format=name, output=str(output),
           sha256=written.sha256, show_names=show_names)  # fmt: skip
