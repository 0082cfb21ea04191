"""``examkit match`` (re-match a case) and ``examkit hits`` (flagged files, names withheld)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from examkit.case import Case
from examkit.display import safe_text
from examkit.hashformat import PERCEPTUAL
from examkit.matching import record_reveal
from examkit.query import HIT_COLUMNS, list_hits
from examkit.rematch import rematch
from examkit.runs import os_user

from .hashset_cmds import DIR_OPTION
from .near_options import PDQ_THRESHOLD, PHASH_THRESHOLD, near_options
from .render import out, policy, print_json, table, write_csv
from .scan_cmd import EXAMINER_ENV


def match_command(
    case: Path = typer.Argument(..., help="Case database."),
    hashsets: list[str] = typer.Option(
        None, "--hashset", "-s", help="Set to match (repeatable; default: every set)."
    ),
    examiner: str = typer.Option(None, "--examiner", "-e", envvar=EXAMINER_ENV),
    folder: Path = DIR_OPTION,
    no_perceptual: bool = typer.Option(
        False, "--no-perceptual", help="Exact matches only (no PDQ / pHash distances)."
    ),
    pdq_threshold: int = PDQ_THRESHOLD,
    phash_threshold: int = PHASH_THRESHOLD,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Match the recorded hashes of a case against hash sets (no evidence is read)."""
    argv = [os.path.basename(sys.argv[0]), *sys.argv[1:]]
    near = near_options(pdq_threshold, phash_threshold, enabled=not no_perceptual)
    summary = rematch(case, hashsets or None, examiner, folder, argv, near)
    if as_json:
        print_json(summary.__dict__)
        return
    out.print(
        f"match run {summary.run_id}: {summary.files_checked:,} hashed streams against "
        f"{len(summary.hashsets)} set(s) in {summary.seconds:.2f} s; newly flagged "
        f"{summary.flagged:,}, newly known-good {summary.known_good:,}; case totals: "
        f"{summary.flagged_total:,} flagged, {summary.known_good_total:,} known-good",
        markup=False,
    )


def _how(algorithms: str, distance: int | None) -> str:
    """``md5``, or ``pdq d=12`` for a perceptual match at that Hamming distance."""
    perceptual = any(a in PERCEPTUAL for a in algorithms.split(","))
    return f"{algorithms} d={distance}" if perceptual else algorithms


def _yes_no(value: int | None) -> str:
    return "" if value is None else ("yes" if value else "no")


def _snapshots(copies: int) -> str:
    return f"{copies} snapshot{'s' if copies != 1 else ''}" if copies else ""


def hits_command(
    case: Path = typer.Argument(..., help="Case database."),
    evidence_id: str = typer.Option(None, "--evidence", help="Only this evidence item."),
    show_names: bool = typer.Option(
        False, "--show-names", help="Reveal file names (logged in the custody log)."
    ),
    all_categories: bool = typer.Option(
        False, "--all-categories", help="Also matches in categories that do not alert."
    ),
    all_copies: bool = typer.Option(
        False,
        "--all-copies",
        help="Also list shadow-copy files whose path and content were listed already.",
    ),
    examiner: str = typer.Option(None, "--examiner", "-e", envvar=EXAMINER_ENV),
    as_json: bool = typer.Option(False, "--json", help="JSON array of hits."),
    as_csv: bool = typer.Option(False, "--csv", help="CSV of hits."),
) -> None:
    """List flagged files: where they are, their hashes and what the sets say (names withheld).

    A file seen unchanged in shadow copies is listed once, with the number of
    snapshots it is also in (``--all-copies`` lists each copy).
    """
    gate = policy(show_names)
    with Case.open(case) as c:
        rows = list(list_hits(c, evidence_id, all_categories, all_copies))
        if show_names and rows:
            record_reveal(c, examiner or os_user(), "hits", [r["file_id"] for r in rows])
    for row in rows:
        row["path"] = gate.path(row["path"], flagged=True)
        row["name"] = gate.name(row["name"], flagged=True)
        for key in ("series", "category_label", "media_id"):
            row[key] = gate.text(row[key]) if row[key] is not None else None
    if as_json:
        print_json(rows)
    elif as_csv:
        write_csv(HIT_COLUMNS, rows)
    else:
        copies = any(r["snapshot_copies"] for r in rows)  # a column only when shadow copies
        columns = ["evidence", "id", "path", "size", "md5", "match", "set", "category", "series",
                   "victim id"] + (["also in"] if copies else [])  # fmt: skip
        out.print(
            table(
                f"{len(rows):,} known-bad hits" + (" (names shown, logged)" if show_names else ""),
                columns,
                (
                    (
                        r["evidence_id"],
                        r["file_id"],
                        r["path"],
                        r["size"],
                        r["md5"],
                        _how(r["algorithms"], r["distance"]),
                        r["hashset"],
                        r["category_label"] or ("" if r["category"] is None else r["category"]),
                        r["series"],
                        _yes_no(r["victim_identified"]),
                    )
                    + ((_snapshots(r["snapshot_copies"]),) if copies else ())
                    for r in rows
                ),
            )
        )
        if rows and not show_names:
            out.print(
                f"file names withheld; {safe_text(str(case))}: use --show-names to reveal them"
                " (the request is logged)",
                markup=False,
            )


def register(app: typer.Typer) -> None:
    app.command("match")(match_command)
    app.command("hits")(hits_command)
