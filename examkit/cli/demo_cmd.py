"""``examkit demo``: scan the built-in sample disk."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from examkit.case import Case
from examkit.demo import run_demo
from examkit.query import FileFilter, list_files, list_hits
from examkit.scan import summary_json

from .render import out, policy, table
from .scan_cmd import exit_code, render_summary


def demo(
    folder: Path = typer.Option(
        None, "--dir", help="Folder for the image and case (default: new temp folder)."
    ),
    workers: int = typer.Option(None, "--workers", "-w", min=0),
    as_json: bool = typer.Option(False, "--json", help="Print the scan summary as JSON."),
) -> None:
    """Build the small synthetic demo disk, scan it into a case, and show what was found."""
    folder = folder or Path(tempfile.mkdtemp(prefix="examkit-demo-"))
    summary = run_demo(folder, workers)
    if as_json:
        out.print(summary_json(summary), markup=False, highlight=False)
        raise typer.Exit(exit_code(summary))
    render_summary(summary)
    gate = policy()
    with Case.open(Path(summary.case)) as case:
        hits = list(list_hits(case))
        interesting = [
            r for r in list_files(case, FileFilter())
            if not r["path"].startswith("/$")  # leave out NTFS/FAT system metadata
            and (r["stream"] or r["state"] != "allocated" or r["extension_mismatch"] == 1)
        ]  # fmt: skip
    out.print(
        table(
            "Alternate data streams, deleted and orphaned entries, extension mismatches",
            ["id", "path", "state", "status", "type", "mismatch", "md5"],  # md5 cut below
            [
                (
                    r["file_id"],
                    gate.path(r["path"], bool(r["flagged"])),
                    r["state"],
                    r["status"],
                    r["mime"],
                    "yes" if r["extension_mismatch"] == 1 else "",
                    (r["md5"] or "")[:12],
                )
                for r in interesting[:25]
            ],
        )
    )
    out.print(
        table(
            "Known-bad hits (sample stand-in set; file names withheld)",
            ["id", "path", "state", "set", "category", "series", "victim id", "md5"],
            [
                (
                    h["file_id"],
                    gate.path(h["path"], flagged=True),
                    h["state"],
                    h["hashset"],
                    h["category_label"],
                    gate.text(h["series"]) if h["series"] else "",
                    {1: "yes", 0: "no"}.get(h["victim_identified"], ""),
                    (h["md5"] or "")[:12],
                )
                for h in hits
            ],
        )
    )
    out.print(
        f"Next: examkit hits {summary.case}\n"
        f"      examkit info {summary.case}\n"
        f"      examkit files {summary.case} --limit 20\n"
        f"      examkit hashset list --hashset-dir {Path(summary.case).parent / 'hashsets'}",
        markup=False,
    )
    raise typer.Exit(exit_code(summary))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
