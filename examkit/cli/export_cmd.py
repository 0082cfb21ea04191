"""``examkit export CASE --file-id ID... --to DIR``: file content out of the evidence."""

from __future__ import annotations

from pathlib import Path

import typer

from examkit.display import safe_text
from examkit.export import MANIFEST, export_files
from examkit.runs import os_user

from .render import out, print_json, table
from .scan_cmd import EXAMINER_ENV


def export_command(
    case: Path = typer.Argument(..., help="Case database."),
    file_ids: list[int] = typer.Option(
        ..., "--file-id", "-i", help="Stream to export (repeatable)."
    ),
    to: Path = typer.Option(
        ..., "--to", help="Destination folder (created; must be new or empty)."
    ),
    reason: str = typer.Option(
        None, "--reason", help="Why (recorded in the custody log; required for flagged files)."
    ),
    examiner: str = typer.Option(None, "--examiner", "-e", envvar=EXAMINER_ENV),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Copy streams out of the evidence into DIR, checked against their recorded hashes.

    Names are made safe (flagged files become ID.bin), nothing is overwritten, no
    symlink is followed, a hashdeep manifest is written and the export is logged.
    Content is written, never displayed.
    """
    done = export_files(case, file_ids, to, reason, examiner or os_user())
    if as_json:
        print_json([e.__dict__ for e in done])
        return
    out.print(
        table(
            f"{len(done)} file(s) exported to {safe_text(str(to))}, hashes checked",
            ["id", "exported as", "size", "sha256"],
            ((e.file_id, e.name, e.size, e.sha256) for e in done),
        )
    )
    out.print(f"manifest: {safe_text(str(to / MANIFEST))} (hashdeep audit format)", markup=False)


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
