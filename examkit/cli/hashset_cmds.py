"""``examkit hashset``: import, list, show, remove and look up reference hash sets."""

from __future__ import annotations

from pathlib import Path

import typer

from examkit.display import safe_text
from examkit.hashset_folders import ENV
from examkit.hashsets import Library, info_dict
from examkit.models import HashSetInfo

from .lookup_lean import run_lookup
from .render import err, human_bytes, out, print_json, table

hashset_app = typer.Typer(
    help=(
        "Reference hash sets: known-bad sets to alert on, known-good sets to filter out.\n\n"
        f"The library folder is the user data folder unless --hashset-dir or {ENV} says otherwise."
    ),
    no_args_is_help=True,
)

DIR_OPTION = typer.Option(
    None, "--hashset-dir", envvar=ENV, help="Hash-set library folder.", show_envvar=True
)


def _registry_formats() -> list:  # type: ignore[type-arg]
    from examkit.plugins import registry

    return registry().hashset_formats


@hashset_app.command("import")
def import_command(
    source: Path = typer.Argument(..., help="Hash-set file (NSRL, VICS, ICSE, md5sum ...)."),
    name: str = typer.Option(..., "--name", "-n", help="Name for the set in the library."),
    kind: str = typer.Option(..., "--kind", "-k", help="known-bad or known-good."),
    fmt: str = typer.Option(None, "--format", "-f", help="Loader (default: detect by content)."),
    profile: str = typer.Option(
        None, "--category-profile", help="Category profile: built-in name or JSON file."
    ),
    description: str = typer.Option(None, "--description"),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first malformed entry."),
    folder: Path = DIR_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Compile a hash-set file into the library (atomic; the same file is imported once)."""
    from examkit.plugins import registry

    reg = registry()
    loader = reg.get("hashset_formats", fmt) if fmt else None
    result = Library(folder).import_set(
        source, name, kind, loader, reg.hashset_formats, profile, strict, description
    )
    info = result.info
    if as_json:
        print_json(
            {
                "created": result.created,
                "seconds": round(result.seconds, 3),
                "malformed_examples": list(result.malformed_examples),
                **info_dict(info),
            }
        )
        return
    if not result.created:
        out.print(
            f"{safe_text(source.name)} is already in the library as {safe_text(info.name)}"
            f" (SHA-256 {info.source_sha256[:16]}…); nothing imported",
            markup=False,
        )
        return
    out.print(
        f"imported {info.entries:,} entries as {safe_text(info.name)} ({info.kind}, "
        f"format {info.format}) in {result.seconds:.2f} s: "
        + ", ".join(f"{a} {v['count']:,}" for a, v in info.algorithms.items()),
        markup=False,
    )
    if info.malformed:
        err.print(f"{info.malformed:,} malformed entries skipped; first ones:", markup=False)
        for bad in result.malformed_examples:
            where = f"line {bad['line']}" if bad.get("line") is not None else "entry"
            err.print(
                f"  {where}: {safe_text(bad['reason'])}: {safe_text(bad['text'], 80)}",
                markup=False,
            )


def _set_rows(sets: list[HashSetInfo]) -> list[tuple[object, ...]]:
    return [
        (
            s.name,
            s.kind.replace("_", "-"),
            s.format,
            s.entries,
            ", ".join(s.algorithms),
            _version(s),
            s.imported_utc[:19] + "Z",
            s.source_name,
        )
        for s in sets
    ]


def _version(info: HashSetInfo) -> str:
    p = info.provenance
    return str(p.get("nsrl_version") or p.get("vics_version") or p.get("set_name") or "")


@hashset_app.command("list")
def list_command(
    folder: Path = DIR_OPTION,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List the sets in the library."""
    library = Library(folder)
    sets = library.sets()
    if as_json:
        print_json([info_dict(s) for s in sets])
        return
    if not sets:
        out.print(f"no hash sets in {library.path}", markup=False)
        return
    out.print(
        table(
            f"Hash sets in {library.path}",
            ["name", "kind", "format", "entries", "digests", "version", "imported", "source"],
            _set_rows(sets),
        )
    )


@hashset_app.command("show")
def show_command(
    name: str = typer.Argument(...),
    folder: Path = DIR_OPTION,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show one set: provenance, counts, category profile."""
    info = Library(folder).get(name)
    data = info_dict(info)
    if as_json:
        print_json(data)
        return
    for key in ("name", "kind", "format", "description", "entries", "source_name",
                "source_sha256", "source_size", "imported_utc", "imported_by", "malformed",
                "path"):  # fmt: skip
        value = data[key]
        if key == "source_size":
            value = f"{value:,} bytes ({human_bytes(value)})"
        out.print(f"{key:>14}: {safe_text(str(value if value is not None else ''))}", markup=False)
    for algorithm, counts in info.algorithms.items():
        out.print(
            f"{algorithm:>14}: {counts['count']:,} digests, {counts['unique']:,} unique",
            markup=False,
        )
    for key, value in sorted(info.provenance.items()):
        out.print(f"{safe_text(key):>14}: {safe_text(str(value))}", markup=False)
    out.print(
        f"{'categories':>14}: profile {safe_text(str(info.category_profile.get('name')))}",
        markup=False,
    )


@hashset_app.command("remove")
def remove_command(name: str = typer.Argument(...), folder: Path = DIR_OPTION) -> None:
    """Remove a set from the library (cases that used it keep their record of it)."""
    what = Library(folder).remove(name)
    out.print(f"removed {safe_text(what)}", markup=False)


@hashset_app.command("lookup")
def lookup_command(
    name: str = typer.Argument(..., help="Set to search."),
    hashes: list[str] = typer.Argument(None, help="MD5, SHA-1 or SHA-256 values (hex)."),
    from_file: Path = typer.Option(None, "--file", "-f", help="File with one hash per line."),
    show_names: bool = typer.Option(
        False, "--show-names", help="Show entry names of a known-bad set."
    ),
    folder: Path = DIR_OPTION,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Print which of the given hashes are in the set, with the set's metadata.

    Output: one line per hit, tab-separated: hash, algorithm, entry name, size,
    metadata (JSON). Exit code 0 when at least one is found, 1 when none is.
    """
    code = run_lookup(name, hashes or [], from_file, show_names, folder, as_json)
    if code:
        raise typer.Exit(code)


@hashset_app.command("formats")
def formats_command() -> None:
    """List the hash-set formats examkit can import (loader plugins)."""
    out.print(
        table(
            None,
            ["format", "priority", "description"],
            [(f.name, f.priority, f.description) for f in _registry_formats()],
        )
    )


def register(app: typer.Typer) -> None:
    app.add_typer(hashset_app, name="hashset")
