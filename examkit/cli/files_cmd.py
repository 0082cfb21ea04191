"""``examkit files``: list recorded files and streams."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from examkit.case import Case
from examkit.display import DisplayPolicy
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
    include_known: bool = typer.Option(
        False, "--include-known", help="Also list files matching a known-good set."
    ),
    all_copies: bool = typer.Option(
        False,
        "--all-copies",
        help="Also list shadow-copy files whose path and content are those of a listed file.",
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON array of rows."),
    as_csv: bool = typer.Option(False, "--csv", help="CSV with every column."),
) -> None:
    """List files and streams (names of flagged files are withheld; see 'examkit hits')."""
    flt = FileFilter(evidence_id, state, status, mime, path, limit, include_known, all_copies)
    gate = policy()
    with Case.open(case) as c:
        rows = (_withhold(r, gate) for r in list_files(c, flt))
        if as_json:
            print_json(list(rows))
        elif as_csv:
            write_csv(FILE_COLUMNS, rows)
        else:
            out.print(
                table(
                    None,
                    ["id", "evidence", "path", "size", "state", "status", "type", "md5"],
                    (
                        (
                            r["file_id"],
                            r["evidence_id"],
                            r["path"],
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


def _withhold(row: dict[str, Any], gate: DisplayPolicy) -> dict[str, Any]:
    """A flagged file's name and path are withheld in every output form."""
    if row["flagged"]:
        row["path"] = gate.path(row["path"], flagged=True)
        row["name"] = gate.name(row["name"], flagged=True)
    else:
        row["path"] = gate.name(row["path"])
    return row


def register(app: typer.Typer) -> None:
    app.command("files")(files)
