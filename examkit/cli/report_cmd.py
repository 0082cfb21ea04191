"""``examkit report``: render a report from the case database."""

from __future__ import annotations

from pathlib import Path

import typer

from examkit.plugins import registry
from examkit.reporting import write_report
from examkit.runs import os_user

from .render import out
from .scan_cmd import EXAMINER_ENV


def report_command(
    case: Path = typer.Argument(..., help="Case database."),
    fmt: str = typer.Option(..., "--format", "-f", help="Report format ('examkit plugins')."),
    output: Path = typer.Option(..., "--output", "-o", help="File to write."),
    show_names: bool = typer.Option(
        False, "--show-names", help="Include names of flagged files (logged)."
    ),
    examiner: str = typer.Option(None, "--examiner", "-e", envvar=EXAMINER_ENV),
) -> None:
    """Write a report (html, pdf, dfxml, case-uco, vics, csv, hashdeep) from the case alone."""
    plugin = registry().get("report_formats", fmt)
    result = write_report(case, plugin, output, show_names, examiner or os_user())
    signed = f", signed by key {result.signed_by[:16]}…" if result.signed_by else ""
    warning = "" if result.integrity_ok else " (WARNING: the case fails verification)"
    out.print(
        f"wrote {result.path} ({result.size:,} bytes, SHA-256 {result.sha256}){signed};"
        f" custody entry {result.seq}{warning}",
        markup=False,
    )


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)
