"""``examkit files``: list recorded files and streams."""

from __future__ import annotations

from pathlib import Path

import typer

from examkit.case import Case
from examkit.query import FILE_COLUMNS, FileFilter, list_files

from .render import out, policy, print_json, table, write_csv


def files(
    case: Path = typer.Argument(..., help="Case database."),
    evidence_id: str = typer.Option(None, "--evidence", help="Only this evidence item."),
    state: list[str] = typer.Option([], "--state", help="allocated, deleted or orphan."),
    status: list[str] = typer.Option([], "--status", help="ok, short, error, no_content …"),
    mime: str = typer.Option(None, "--mime", help="MIME type prefix, e.g. image/."),
    path: str = typer.Option(None, "--path", help="SQL LIKE pattern on the path."),
    limit: int = typer.Option(None, "--limit", min=1),
    as_json: bool = typer.Option(False, "--json", help="JSON array of rows."),
    as_csv: bool = typer.Option(False, "--csv", help="CSV with every column."),
) -> None:
    """List files and streams (paths pass the display gate)."""
    flt = FileFilter(evidence_id, state, status, mime, path, limit)
    with Case.open(case) as c:
        rows = list_files(c, flt)
        if as_json:
            print_json(list(rows))
        elif as_csv:
            write_csv(FILE_COLUMNS, rows)
        else:
            gate = policy()
            out.print(
                table(
                    None,
                    ["id", "evidence", "path", "size", "state", "status", "type", "md5"],
                    (
                        (
                            r["file_id"],
                            r["evidence_id"],
                            gate.name(r["path"]),
                            r["size"],
                            r["state"],
                            r["status"],
                            r["mime"],
                            r["md5"],
                        )
                        for r in rows
                    ),
                )
            )


def register(app: typer.Typer) -> None:
    app.command("files")(files)
