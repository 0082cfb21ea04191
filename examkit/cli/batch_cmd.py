"""``examkit batch JOBS.toml``: a queue of cases and evidence items, unattended."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer

from examkit.batch import run_batch
from examkit.display import safe_text
from examkit.hashsets import Library
from examkit.jobs import JobProblem, JobsFile, JobsFileError, load_jobs
from examkit.plugins import registry

from .render import err, out
from .scan_cmd import EXAMINER_ENV

EXIT_CODES = "Exit codes: 0 every item complete, 4 some items failed, 1 could not run, 2 usage."


def batch_command(
    jobs_file: Path = typer.Argument(..., help="Jobs file (TOML): cases, evidence, reports."),
    check: bool = typer.Option(False, "--check", help="Only validate the jobs file."),
    as_json: bool = typer.Option(
        False, "--json", help="One JSON object per line on stdout for each event."
    ),
    examiner: str = typer.Option(
        None, "--examiner", "-e", envvar=EXAMINER_ENV, help="Overrides the jobs file."
    ),
    workers: int = typer.Option(
        None, "--workers", "-w", min=0, envvar="EXAMKIT_WORKERS", help="Worker processes."
    ),
    hashset_dir: Path = typer.Option(
        None, "--hashset-dir", envvar="EXAMKIT_HASHSETS", help="Hash-set library folder."
    ),
    cluster: str = typer.Option(
        None, "--cluster", envvar="EXAMKIT_CLUSTER", help="Dask scheduler address."
    ),
    progress_interval: float = typer.Option(
        5.0, "--progress-interval", min=0.1, help="Seconds between progress events."
    ),
) -> None:
    """Run a jobs file unattended: scan every evidence item, write the reports.

    Running the same jobs file again skips complete items and resumes
    interrupted ones. Exit codes: 0 every item complete, 4 some items failed,
    1 could not run, 2 usage (an invalid jobs file).
    """
    overrides: dict[str, Any] = {"examiner": examiner, "hashset_dir": hashset_dir,
                                 "cluster": cluster}  # fmt: skip
    if workers is not None:
        overrides["workers"] = workers
    try:
        jobs = _validated(jobs_file, hashset_dir)
    except JobsFileError as exc:
        _print_problems(exc.problems, jobs_file, as_json)
        raise
    if check:
        _print_check(jobs, as_json)
        return
    sink = _json_line if as_json else _human_line
    argv = [os.path.basename(sys.argv[0]), *sys.argv[1:]]
    result = run_batch(jobs, sink, progress_interval, argv, overrides)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _validated(path: Path, hashset_dir: Path | None) -> JobsFile:
    """The jobs file, checked against the installed report formats and the hash-set library."""
    formats = [f.name for f in registry().report_formats]
    jobs = load_jobs(path, formats)
    folders = {hashset_dir or case.hashset_dir for case in jobs.cases}
    if len(folders) == 1:  # one library: its set names are checked with their lines
        names = {info.name for info in Library(folders.pop()).sets()}
        return load_jobs(path, formats, names)
    problems: list[JobProblem] = []
    for case in jobs.cases:
        library = Library(hashset_dir or case.hashset_dir)
        known = {info.name for info in library.sets()}
        problems += [
            JobProblem(case.line, f"hash set {name!r} is not in the library {library.path}")
            for name in case.hashsets or ()
            if name not in known
        ]
    if problems:
        raise JobsFileError.listing(path, problems)
    return jobs


def _print_problems(problems: tuple[JobProblem, ...], path: Path, as_json: bool) -> None:
    if as_json:
        listed = [{"line": p.line, "message": p.message} for p in problems]
        _json_line({"event": "invalid_jobs_file", "jobs_file": str(path), "problems": listed})
    for problem in problems:
        sys.stderr.write(f"  {safe_text(str(problem))}\n")


def _print_check(jobs: JobsFile, as_json: bool) -> None:
    evidence = sum(len(c.evidence) for c in jobs.cases)
    reports = sum(len(c.reports) for c in jobs.cases)
    if as_json:
        warnings = [{"line": w.line, "message": w.message} for w in jobs.warnings]
        _json_line({"event": "jobs_file_valid", "jobs_file": str(jobs.path), "sha256": jobs.sha256,
                    "cases": len(jobs.cases), "evidence": evidence, "reports": reports,
                    "warnings": warnings})  # fmt: skip
        return
    out.print(f"{safe_text(str(jobs.path))}: valid; {len(jobs.cases)} case(s), {evidence} "
              f"evidence item(s), {reports} report(s)", markup=False)  # fmt: skip
    for warning in jobs.warnings:
        err.print(f"warning: {safe_text(str(warning))}", markup=False)


def _json_line(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, ensure_ascii=True, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


_SHOWN = {
    "case_started": "{case}: started (log {log})",
    "evidence_started": "  {evidence_id}: started",
    "evidence_skipped": "  {evidence_id}: skipped, {reason}",
    "evidence_verified": "  {evidence_id}: media verification {result}",
    "evidence_finished": "  {evidence_id}: complete, {files} streams, {bytes_hashed} bytes hashed,"
    " {flagged} flagged, {known_good} known-good",
    "evidence_failed": "  {evidence_id}: FAILED: {reason}",
    "report_written": "  report {format}: {output}",
    "error": "error: {message}",
    "warning": "warning: line {line}: {message}",
    "case_finished": "{case}: {complete} complete, {skipped} skipped, {failed} failed",
    "batch_finished": "batch: {complete} complete, {skipped} skipped, {failed} failed,"
    " {cases_not_run} case(s) not run; exit code {exit_code}",
}


def _human_line(record: dict[str, Any]) -> None:
    """Plain lines for a person or a plain log (no progress bar: the JSON has progress)."""
    template = _SHOWN.get(record["event"])
    if template is None:
        return
    text = template.format_map({k: v for k, v in record.items()})
    stream = err if record["event"] in ("error", "warning", "evidence_failed") else out
    stream.print(f"{record['utc']} {safe_text(text)}", markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("batch", epilog=EXIT_CODES)(batch_command)
