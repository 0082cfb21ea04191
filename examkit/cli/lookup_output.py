"""``examkit hashset lookup`` without the CLI framework: parse, search, print.

Lookups are scripted in bulk, so the command has a lean path: ``main`` hands a
plain ``examkit hashset lookup NAME [HASH...] [-f FILE] [--json] [--show-names]
[--hashset-dir DIR]`` straight to :func:`fast_lookup` (no typer, no rich);
anything else (``--help``, an unknown option) goes through typer as usual.
Both paths run :func:`run_lookup`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from examkit.display import WITHHELD, safe_text
from examkit.errors import UsageError
from examkit.hashdb import lookup_hex
from examkit.hashsets import ENV, Library


def _name(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "backslashreplace")


def run_lookup(
    name: str,
    hashes: Sequence[str],
    from_file: Path | None,
    show_names: bool,
    folder: Path | None,
    as_json: bool,
) -> int:
    """Print the hits (tab-separated, or JSON); 0 when any hash is found, else 1."""
    values = [h.strip() for h in hashes]
    if from_file is not None:
        try:
            text = from_file.read_text("ascii", errors="replace")
        except OSError as exc:
            raise UsageError(f"cannot read {from_file}: {exc.strerror}", "check the path") from exc
        values.extend(line.strip() for line in text.splitlines() if line.strip())
    if not values:
        raise UsageError("no hashes given", "give hashes as arguments or with --file")
    library = Library(folder)
    info = library.get(name)
    index = library.open(name)
    hide = info.kind == "known_bad" and not show_names
    hits, invalid = lookup_hex(index, values)
    names, sizes, metas = index.columns([h[2] for h in hits])
    rows = zip(hits, names, sizes, metas, strict=True)
    if as_json:
        found = [
            {
                "hash": value,
                "algorithm": algorithm,
                "entry": entry,
                "name": WITHHELD if hide and name else _name(name),
                "size": size,
                "meta": json.loads(meta) if meta else {},
            }
            for (value, algorithm, entry), name, size, meta in rows
        ]
        doc = {"set": info.name, "given": len(values), "found": found, "invalid": invalid}
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=True, sort_keys=True) + "\n")
    else:
        sys.stdout.write(
            "".join(
                f"{value}\t{algorithm}\t{WITHHELD if hide and name else safe_text(_name(name))}"
                f"\t{'' if size is None else size}\t{safe_text(meta.decode()) if meta else ''}\n"
                for (value, algorithm, _entry), name, size, meta in rows
            )
        )
        sys.stdout.flush()
        found_count = len({h[0] for h in hits})
        sys.stderr.write(
            f"{found_count:,} of {len(values):,} given hashes are in {safe_text(info.name)}\n"
        )
        if invalid:
            sys.stderr.write(f"{invalid:,} values are not MD5, SHA-1 or SHA-256 hex\n")
    return 0 if hits else 1


def fast_lookup(args: Sequence[str]) -> int | None:
    """Run a plain lookup command line; ``None`` when it needs the full CLI."""
    if len(args) < 3 or list(args[:2]) != ["hashset", "lookup"]:
        return None
    hashes: list[str] = []
    name: str | None = None
    from_file: Path | None = None
    folder = os.environ.get(ENV) or None
    show_names = as_json = False
    rest = list(args[2:])
    while rest:
        arg = rest.pop(0)
        if arg in ("-f", "--file", "--hashset-dir"):
            if not rest:
                return None
            value = rest.pop(0)
            if arg == "--hashset-dir":
                folder = value
            else:
                from_file = Path(value)
        elif arg == "--json":
            as_json = True
        elif arg == "--show-names":
            show_names = True
        elif arg.startswith("-"):
            return None  # --help, unknown options, '--file=X': the full CLI handles them
        elif name is None:
            name = arg
        else:
            hashes.append(arg)
    if name is None:
        return None
    return run_lookup(name, hashes, from_file, show_names, Path(folder) if folder else None,
                      as_json)  # fmt: skip
