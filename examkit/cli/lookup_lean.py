"""``examkit hashset lookup`` without the CLI framework and, where it can, without numpy.

Lookups are scripted in bulk, so the command has a lean path: ``main`` hands a
plain ``examkit hashset lookup NAME [HASH...] [-f FILE] [--json] [--show-names]
[--hashset-dir DIR]`` straight to :func:`fast_lookup` (no typer, no rich);
anything else (``--help``, an unknown option) goes through typer as usual.
Both paths run :func:`run_lookup`, which answers through the compiled helper
(``examkit.fastlookup``) when it can and through numpy
(``examkit.cli.lookup_output``) otherwise: the same bytes either way.
"""

from __future__ import annotations

import mmap
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from examkit.display import safe_text
from examkit.errors import UsageError
from examkit.fastlookup import compiled_tsv
from examkit.hashset_folders import ENV, default_dir, set_folder


def run_lookup(
    name: str,
    hashes: Sequence[str],
    from_file: Path | None,
    show_names: bool,
    folder: Path | None,
    as_json: bool,
) -> int:
    """Print the hits (tab-separated, or JSON); 0 when any hash is found, else 1."""
    data = _queries(hashes, from_file)
    where = set_folder(folder or default_dir(), name)
    answer = None if as_json else compiled_tsv(where, data, show_names)
    if answer is None:
        from .lookup_output import lookup_general

        return lookup_general(where, bytes(data), show_names, as_json)
    if answer.given == 0:
        raise UsageError("no hashes given", "give hashes as arguments or with --file")
    sys.stdout.buffer.write(answer.text)
    sys.stdout.buffer.flush()
    summary(answer.set_name, answer.found, answer.given, answer.invalid)
    return 0 if answer.found else 1


def _queries(hashes: Sequence[str], from_file: Path | None) -> bytes | mmap.mmap:
    """The query lines: the hashes given, then the file's lines (a file given alone is
    mapped, not read: its pages are the page cache's, not new memory of this process)."""
    data = "".join(h.replace("\n", " ") + "\n" for h in hashes).encode("utf-8", "replace")
    if from_file is None:
        return data
    try:
        with open(from_file, "rb") as fh:
            if not data and os.fstat(fh.fileno()).st_size:
                return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            return data + fh.read()
    except OSError as exc:
        raise UsageError(f"cannot read {from_file}: {exc.strerror}", "check the path") from exc


def summary(name: str, found: int, given: int, invalid: int) -> None:
    """The closing lines on standard error, the same from both paths."""
    sys.stderr.write(f"{found:,} of {given:,} given hashes are in {safe_text(name)}\n")
    if invalid:
        sys.stderr.write(f"{invalid:,} values are not MD5, SHA-1 or SHA-256 hex\n")


def fast_lookup(args: Sequence[str]) -> int | None:
    """Run a plain lookup command line; ``None`` when it needs the full CLI."""
    if len(args) < 3 or list(args[:2]) != ["hashset", "lookup"]:
        return None
    hashes: list[str] = []
    name: str | None = None
    from_file: Path | None = None
    folder = os.environ.get(ENV) or None
    if folder is None:  # as the full CLI: examkit.toml's hashset_dir, else the default library
        from examkit.config import load_settings

        setting = load_settings(only="hashset_dir")["hashset_dir"]
        folder = str(setting.value) if setting.source != "default" and setting.value else None
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
