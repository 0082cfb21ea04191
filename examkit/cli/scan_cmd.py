"""``examkit scan``: the main job."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from examkit.display import safe_text
from examkit.errors import UsageError
from examkit.evidence import parse_expect
from examkit.interrupts import RunSignals
from examkit.isolation import STALL_SECONDS
from examkit.layers import Unlock, parse_unlock
from examkit.models import ScanSummary
from examkit.plugins import registry
from examkit.scan import ScanOptions, scan
from examkit.scan import summary_json as _summary_json

from .near_options import PDQ_THRESHOLD, PHASH_THRESHOLD, near_options
from .render import err, human_bytes, out, table

if TYPE_CHECKING:
    from rich.progress import TaskID

EXAMINER_ENV = "EXAMKIT_EXAMINER"


class RichProgress:
    """Draws the scan's progress on stderr: files, bytes, rate and ETA."""

    def __init__(self) -> None:
        from rich.progress import (  # imported when a bar is drawn, not for --json
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files"),
            TextColumn("{task.fields[done_bytes]}"),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[hits]}"),
            console=err.get(),
            transient=False,
        )
        self.task: TaskID | None = None
        self.phase_name = ""
        self.bytes_done = 0
        self.bytes_total = 0
        self.files_done = self.files_total = 0
        self.early_files = self.early_bytes = 0  # hashed while the listing went on
        self.flagged = 0
        self.known_good = 0

    def __enter__(self) -> RichProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def phase(self, name: str, evidence_id: str, files: int, nbytes: int) -> None:
        if self.task is not None:
            self.bar.stop_task(self.task)
        self.phase_name = name
        label = f"{name} {safe_text(evidence_id)}"
        self.bytes_done, self.bytes_total = 0, nbytes
        self.files_total, self.files_done = files, 0
        # the bar measures bytes when hashing (rate, ETA) and entries when listing
        total = nbytes if name == "hashing" else None
        self.task = self.bar.add_task(label, total=total, done_bytes="", hits=self._hits())
        early = (self.early_files, self.early_bytes)
        self.early_files = self.early_bytes = 0
        if name == "hashing" and early[0]:  # what was hashed while listing is done
            self.hashed(*early)

    def listed(self, entries: int) -> None:
        if self.task is not None:
            self.files_done += entries
            self.bar.update(self.task, advance=0, done_bytes=self._listing_text())

    def _listing_text(self) -> str:
        text = f"{self.files_done:,} entries"
        if self.early_files:
            text += f" · {self.early_files:,} hashed"
        return text

    def matched(self, flagged: int, known_good: int) -> None:
        """Hit counts only: nothing about which files matched is ever drawn."""
        self.flagged += flagged
        self.known_good += known_good
        if self.task is not None:
            self.bar.update(self.task, hits=self._hits())

    def _hits(self) -> str:
        if not (self.flagged or self.known_good):
            return ""
        return f"hits: {self.flagged:,} known-bad, {self.known_good:,} known-good"

    def hashed(self, files: int, nbytes: int) -> None:
        if self.task is None:
            return
        if self.phase_name == "listing":  # hashing has started on what is listed
            self.early_files += files
            self.early_bytes += nbytes
            self.bar.update(self.task, advance=0, done_bytes=self._listing_text())
            return
        self.files_done += files
        self.bytes_done += nbytes
        self.bar.update(
            self.task,
            advance=nbytes,
            done_bytes=(
                f"{self.files_done:,}/{self.files_total:,} · "
                f"{human_bytes(self.bytes_done)}/{human_bytes(self.bytes_total)}"
            ),
        )


def render_summary(summary: ScanSummary) -> None:
    rows = []
    for ev in summary.evidence:
        rows.append(
            (
                ev.evidence_id,
                ev.container,
                human_bytes(ev.media_size),
                ev.volumes,
                f"{ev.filesystems} ok, {ev.filesystem_errors} not opened",
                ev.files,
                human_bytes(ev.bytes_hashed),
                f"{ev.flagged:,} flagged, {ev.known_good:,} known-good",
                ev.verification,
            )
        )
    out.print(
        table(
            f"Scan run {summary.run_id}: {summary.status} in {summary.seconds:.1f} s",
            [
                "evidence",
                "container",
                "media",
                "volumes",
                "file systems",
                "streams",
                "hashed",
                "hash-set hits",
                "verification",
            ],
            rows,
        )
    )
    failed = {f.split(": ", 1)[0] for f in summary.failures}
    for ev in summary.evidence:
        if ev.evidence_id in failed and not ev.by_state:
            continue  # nothing listed: the failure line below says why
        states = ", ".join(f"{k} {v:,}" for k, v in sorted(ev.by_state.items()))
        statuses = ", ".join(f"{k} {v:,}" for k, v in sorted(ev.by_status.items()))
        out.print(f"{safe_text(ev.evidence_id)}: {states} | read status: {statuses}", markup=False)
        for locked in ev.locked:
            line = f"{safe_text(ev.evidence_id)}: encrypted, locked: {safe_text(locked)}"
            err.print(f"{line} (not walked; open it with --unlock VOLUME=password:…)", markup=False)
        if ev.verification_detail:
            out.print(
                f"{safe_text(ev.evidence_id)} verification: {ev.verification_detail}", markup=False
            )
    for failure in summary.failures:
        err.print(f"FAILED {safe_text(failure)}", markup=False, soft_wrap=True)
    if any(ev.flagged for ev in summary.evidence):
        out.print(
            f"flagged files: examkit hits {summary.case} (names withheld unless --show-names)",
            markup=False,
        )
    out.print(f"case file: {summary.case}", markup=False)


def exit_code(summary: ScanSummary) -> int:
    if any(ev.verification == "mismatch" for ev in summary.evidence):
        return 3
    return 0 if summary.status == "complete" else 1


def parse_path_map(values: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for value in values:
        local, sep, remote = value.partition("=")
        if not sep or not local or not remote:
            raise UsageError(f"--path-map {value!r} is not LOCAL=REMOTE",
                             "e.g. --path-map /mnt/evidence=/shared/evidence")  # fmt: skip
        pairs.append((local, remote))
    return tuple(pairs)


def parse_unlocks(values: list[str]) -> tuple[Unlock, ...]:
    """``--unlock`` values; ``password:-`` / ``recovery-key:-`` ask at the terminal."""
    out = []
    for value in values:
        volume, _, rest = value.partition("=")
        kind, _, secret = rest.partition(":")
        if secret == "-" and kind in ("password", "recovery-key"):
            if not sys.stdin.isatty():
                raise UsageError(f"--unlock {volume}={kind}:- needs a terminal to ask",
                                 "give the secret in a key file (key-file:PATH)")  # fmt: skip
            secret = getpass.getpass(f"{kind} for volume {volume}: ")
            value = f"{volume}={kind}:{secret}"
        out.append(parse_unlock(value))
    return tuple(out)


def parse_fs_backends(values: list[str]) -> tuple[tuple[str, str], ...]:
    """``--fs-backend WALKER`` (every volume) or ``VOLUME=WALKER``; the walker must exist."""
    names = [w.name for w in registry().filesystems]
    pairs = []
    for value in values:
        volume, sep, name = value.rpartition("=")
        volume = volume if sep else "*"
        if name not in names:
            raise UsageError(f"--fs-backend {value!r}: no file-system walker named {name!r}",
                             f"choose one of: {', '.join(names)}")  # fmt: skip
        pairs.append((volume.strip() or "*", name))
    return tuple(pairs)


def scan_command(
    images: list[Path] = typer.Argument(..., help="Image files (raw/dd, split raw, E01 …)."),
    case: Path = typer.Option(..., "--case", "-c", help="Case database (created if missing)."),
    examiner: str = typer.Option(
        None, "--examiner", "-e", envvar=EXAMINER_ENV, help="Who runs the scan."
    ),
    evidence_id: str = typer.Option(None, "--evidence-id", help="Id for this evidence item."),
    description: str = typer.Option(None, "--description", help="Evidence description."),
    expect: list[str] = typer.Option(
        [], "--expect", help="Acquisition hash to verify, ALGO:HEX (md5, sha1, sha256)."
    ),
    workers: int = typer.Option(
        None,
        "--workers",
        "-w",
        min=0,
        envvar="EXAMKIT_WORKERS",
        help="Worker processes (default: all cores; 0: none).",
    ),
    resume: bool = typer.Option(False, "--resume", help="Finish an interrupted scan."),
    no_verify: bool = typer.Option(
        False, "--no-verify", help="Do not hash the whole media (no verification)."
    ),
    hashsets: list[str] = typer.Option(
        None, "--hashset", "-s", help="Hash set to match (repeatable; default: every set)."
    ),
    hashset_dir: Path = typer.Option(
        None, "--hashset-dir", envvar="EXAMKIT_HASHSETS", help="Hash-set library folder."
    ),
    cluster: str = typer.Option(
        None,
        "--cluster",
        envvar="EXAMKIT_CLUSTER",
        help="Dask scheduler address (tcp://HOST:PORT): hash on its workers.",
    ),
    path_map: list[str] = typer.Option(
        [], "--path-map", help="LOCAL=REMOTE: where cluster workers see the evidence (repeatable)."
    ),
    no_confirm: bool = typer.Option(
        False, "--no-confirm", help="Do not hash the media again at the end of the run."
    ),
    no_perceptual: bool = typer.Option(
        False, "--no-perceptual", help="No perceptual hashes (PDQ, pHash, dHash) of images."
    ),
    pdq_threshold: int = PDQ_THRESHOLD,
    phash_threshold: int = PHASH_THRESHOLD,
    stall_timeout: float = typer.Option(
        STALL_SECONDS,
        "--stall-timeout",
        min=1,
        help="Stop a worker that makes no progress for this many seconds (a hang in TSK).",
    ),
    archive_depth: int = typer.Option(
        3,
        "--archive-depth",
        min=0,
        max=16,
        help="Expand archives (ZIP, 7z, TAR, gzip) this many levels deep; 0: not at all.",
    ),
    unlock: list[str] = typer.Option(
        [],
        "--unlock",
        help="Open an encrypted volume: VOLUME=password:TEXT | recovery-key:KEY | key-file:PATH"
        " (VOLUME: its UUID/GUID, its number, or *; TEXT '-' asks without echo). Repeatable;"
        " secrets are never recorded.",
    ),
    shadow_copies: bool = typer.Option(
        False, "--shadow-copies", help="Also walk every Volume Shadow Copy of NTFS volumes."
    ),
    fs_backend: list[str] = typer.Option(
        [],
        "--fs-backend",
        help="Force a file-system walker (tsk, apfs, xfs), for all volumes or VOLUME=WALKER.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Scan images into a case: every volume, file system, file and stream, hashed and matched."""
    options = ScanOptions(
        resume=resume,
        verify_media=not no_verify,
        confirm_media=not no_confirm,
        cluster=cluster,
        path_map=parse_path_map(path_map),
        hashsets=tuple(hashsets) if hashsets else None,
        hashset_dir=str(hashset_dir) if hashset_dir else None,
        perceptual=not no_perceptual,
        stall_seconds=stall_timeout,
        archive_depth=archive_depth,
        near=near_options(pdq_threshold, phash_threshold, enabled=not no_perceptual),
        unlocks=parse_unlocks(unlock),
        shadow_copies=shadow_copies,
        fs_backends=parse_fs_backends(fs_backend),
    )
    if workers is not None:
        options.workers = workers
    expected = parse_expect(expect)
    show_bar = not as_json and err.is_terminal
    argv = [os.path.basename(sys.argv[0]), *sys.argv[1:]]
    if show_bar:
        with RichProgress() as progress:
            summary = scan(case, images, examiner, evidence_id, expected, description,
                           options, progress, argv)  # fmt: skip
    else:
        summary = scan(case, images, examiner, evidence_id, expected, description,
                       options, None, argv)  # fmt: skip
    with RunSignals():  # the run is closed: a signal now is dropped, not reported
        if as_json:
            sys.stdout.write(_summary_json(summary) + "\n")
        else:
            render_summary(summary)
    code = exit_code(summary)
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("scan")(scan_command)
