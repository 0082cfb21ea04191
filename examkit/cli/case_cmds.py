"""``examkit case init``, ``examkit evidence add``, ``examkit info``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from examkit.case import Case
from examkit.display import safe_text
from examkit.evidence import parse_expect
from examkit.intake import add_evidence
from examkit.locking import case_lock
from examkit.plugins import registry
from examkit.query import overview

from .render import human_bytes, out, print_json, table
from .scan_cmd import EXAMINER_ENV

case_app = typer.Typer(help="Create case databases.", no_args_is_help=True)
evidence_app = typer.Typer(help="Register evidence items in a case.", no_args_is_help=True)


@case_app.command("init")
def case_init(
    case: Path = typer.Argument(..., help="Case database file to create."),
    case_number: str = typer.Option(None, "--case-number", "-n", help="Default: file name."),
    title: str = typer.Option(None, "--title"),
    agency: str = typer.Option(None, "--agency"),
    examiner: str = typer.Option(None, "--examiner", "-e", envvar=EXAMINER_ENV),
) -> None:
    """Create a new, empty case database."""
    with Case.create(case, case_number, title, agency, examiner) as c:
        number = c.info()["case_number"]
    out.print(f"created case {safe_text(number)} in {case}", markup=False)


@evidence_app.command("add")
def evidence_add(
    case: Path = typer.Argument(..., help="Case database (created if missing)."),
    images: list[Path] = typer.Argument(..., help="Image files of one or more evidence items."),
    evidence_id: str = typer.Option(None, "--evidence-id"),
    description: str = typer.Option(None, "--description"),
    expect: list[str] = typer.Option([], "--expect", help="Acquisition hash ALGO:HEX."),
    examiner: str = typer.Option(None, "--examiner", "-e", envvar=EXAMINER_ENV),
) -> None:
    """Register evidence without scanning it (container, segments, size, stored hashes)."""
    expected = parse_expect(expect)
    with case_lock(case, "evidence add"), Case.open_or_create(case, examiner) as c:
        sets = add_evidence(c, registry(), images, evidence_id, description, expected, examiner)
        for item in sets:
            row = c.evidence(item.evidence_id) or {}
            state = "added" if item.is_new else "already in the case"
            out.print(
                f"{safe_text(item.evidence_id)}: {row.get('container')} "
                f"{human_bytes(row.get('media_size'))}, {len(item.paths)} file(s), {state}",
                markup=False,
            )


def info(
    case: Path = typer.Argument(..., help="Case database."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the case, its evidence, runs and counts by state and type."""
    with Case.open(case) as c:
        data = overview(c)
    if as_json:
        print_json(data)
        return
    ci = data["case"]
    out.print(
        f"case {safe_text(ci['case_number'])}  created {ci['created_utc']}  "
        f"examiner {safe_text(ci['examiner'])}  schema v{ci['schema_version']}",
        markup=False,
    )
    out.print(
        table(
            "Evidence",
            ["id", "container", "media size", "files", "scan", "verification", "media md5"],
            [
                (
                    e["evidence_id"],
                    e["container"],
                    human_bytes(e["media_size"]),
                    len(e["source_paths"]),
                    e["scan_status"],
                    e["verification"],
                    e["media_md5"],
                )
                for e in data["evidence"]
            ],
        )
    )
    for e in data["evidence"]:
        out.print(
            table(
                f"{safe_text(e['evidence_id'])}: volumes",
                ["#", "kind", "in", "offset", "length", "layer", "state", "description"],
                [
                    (
                        v["idx"],
                        v["kind"],
                        "" if v["parent"] is None else v["parent"],
                        v["start_offset"],
                        human_bytes(v["length"]),
                        v["layer_type"] or "",
                        _layer_state(v),
                        v["layer_detail"] or v["description"] or "",
                    )
                    for v in e["volumes"]
                ],
            )
        )
        out.print(
            table(
                f"{safe_text(e['evidence_id'])}: file systems",
                ["id", "volume", "walker", "type", "offset", "status", "entries", "error"],
                [
                    (
                        f["filesystem_id"],
                        f["volume"],
                        f["walker"],
                        f["fs_type"],
                        f["offset"],
                        f["status"],
                        f["entries"],
                        f["error"],
                    )
                    for f in e["filesystems"]
                ],
            )
        )
        for line in snapshot_lines(e["filesystems"]):
            out.print(line, markup=False)
        counts = [("state", k, v) for k, v in e["by_state"].items()]
        counts += [("read status", k, v) for k, v in e["by_status"].items()]
        counts += [("type", k, v) for k, v in e["by_mime"].items()]
        counts.append(("extension mismatch", "yes", e["extension_mismatches"]))
        counts.append(("hash sets", "flagged (known-bad)", e["flagged"]))
        counts.append(("hash sets", "known-good", e["known_good"]))
        out.print(table(f"{safe_text(e['evidence_id'])}: counts", ["by", "value", "n"], counts))
    if data["hashsets"]:
        out.print(
            table(
                "Hash sets used",
                ["id", "name", "kind", "format", "version", "entries", "source sha256"],
                [
                    (
                        h["hashset_id"],
                        h["name"],
                        h["kind"],
                        h["format"],
                        h["version"],
                        h["entries"],
                        h["source_sha256"][:16] + "…",
                    )
                    for h in data["hashsets"]
                ],
            )
        )
    out.print(
        table(
            "Runs",
            ["run", "started (UTC)", "finished (UTC)", "status", "examiner", "error"],
            [
                (
                    r["run_id"],
                    r["started_utc"],
                    r["finished_utc"],
                    r["status"],
                    r["examiner"],
                    r["error"],
                )
                for r in data["runs"]
            ],
        )
    )
    log = data["custody_log"]
    out.print(f"custody log: {log['detail']}", markup=False)


def snapshot_lines(filesystems: list[dict[str, Any]]) -> list[str]:
    """What the walkers found of snapshots (APFS): listed in the case, not walked."""
    lines = []
    for fs in filesystems:
        details = fs.get("details") or {}
        if details.get("snapshots_error"):
            lines.append(
                f"file system {fs['filesystem_id']}: {safe_text(details['snapshots_error'])}"
            )
        for vol in details.get("volumes", []):
            snaps = vol.get("snapshots", [])
            name = safe_text(vol.get("name"))
            if not snaps:
                lines.append(f"file system {fs['filesystem_id']}, APFS volume {name}: no snapshots")
                continue
            listed = "; ".join(f"{safe_text(s['name'])} (xid {s['xid']}, {s['created']})"
                               for s in snaps)  # fmt: skip
            lines.append(f"file system {fs['filesystem_id']}, APFS volume {name}: {len(snaps)}"
                         f" snapshot(s), listed, not walked: {listed}")  # fmt: skip
    return lines


def register(app: typer.Typer) -> None:
    app.add_typer(case_app, name="case")
    app.add_typer(evidence_app, name="evidence")
    app.command("info")(info)


def _layer_state(volume: dict[str, Any]) -> str:
    """``locked`` / ``unlocked (password)`` / the layer's error, for encrypted and other layers."""
    if volume["locked"] == 1:
        return f"locked: {volume['layer_error']}" if volume["layer_error"] else "locked"
    if volume["locked"] == 0:
        return f"unlocked ({volume['unlocked_with']})"
    return volume["layer_error"] or ""
