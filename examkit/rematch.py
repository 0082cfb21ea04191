"""``match``: match a case's recorded digests against hash sets, without reading evidence."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .case import Case
from .hashsets import Library
from .interrupts import RunSignals
from .locking import case_lock
from .matching import Matcher, NearOptions, match_case, use_sets
from .plugins import registry
from .runs import check_unchanged, finish_run, start_run


@dataclass(frozen=True)
class RematchSummary:
    case: str
    run_id: int
    hashsets: tuple[str, ...]
    files_checked: int
    matches: int
    flagged: int  # files newly flagged by this run
    known_good: int  # files newly marked known-good by this run
    flagged_total: int
    known_good_total: int
    seconds: float


def rematch(
    case_path: Path,
    hashsets: Sequence[str] | None = None,
    examiner: str | None = None,
    hashset_dir: Path | None = None,
    argv: Sequence[str] | None = None,
    near: NearOptions | None = None,
) -> RematchSummary:
    """Match every hashed stream in the case against ``hashsets`` (default: all in the library)."""
    started = time.monotonic()
    infos = Library(hashset_dir).select(list(hashsets) if hashsets is not None else None)
    with case_lock(case_path, "match"), Case.open(case_path) as case:
        case.mark_stale_runs()
        check_unchanged(case)
        evidence_ids = [r[0] for r in case.conn.execute("SELECT evidence_id FROM evidence")]
        near = near or NearOptions()
        options = {"hashsets": [i.name for i in infos], "near": asdict(near)}
        with RunSignals() as signals:  # held whenever the run is opened or closed
            with case.transaction() as conn:
                run_id = start_run(
                    conn, "match", examiner, argv, options, evidence_ids,
                    registry().versions(), options,
                )  # fmt: skip
                matcher = Matcher(use_sets(conn, infos, run_id, examiner), near)
            try:
                signals.release()
                counts = match_case(case, matcher, run_id)
                signals.hold()
            except BaseException as exc:
                signals.hold()
                status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                finish_run(case, run_id, status, examiner, f"{type(exc).__name__}: {exc}", {})
                raise
            flagged_total, good_total = case.conn.execute(
                "SELECT coalesce(sum(flagged), 0), coalesce(sum(known_good), 0) FROM files"
            ).fetchone()
            finish_run(
                case, run_id, "complete", examiner, None,
                {"files_checked": counts.files_checked, "matches": counts.matches,
                 "flagged_files": counts.flagged, "known_good_files": counts.known_good},
            )  # fmt: skip
    return RematchSummary(
        str(case_path), run_id, tuple(i.name for i in infos), counts.files_checked,
        counts.matches, counts.flagged, counts.known_good, flagged_total, good_total,
        time.monotonic() - started,
    )  # fmt: skip
