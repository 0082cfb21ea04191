"""Bulk lookups through the compiled helper (``examkit.native``), without numpy.

``examkit hashset lookup`` is a whole process per call, scripted in bulk: starting
numpy costs more than the search. For the common case (a set whose entries carry
at most a name, a tab-separated answer) the helper reads the queries, searches
the memory-mapped index and writes the answer in one call. It answers exactly
as the numpy path (``examkit.hashdb.lookup_lines`` and ``examkit.cli.lookup_output``;
tests/test_hashset_native.py compares them byte for byte) and declines
whenever that path must decide: a name to pass through the display gate, sizes
or metadata to print, index files that disagree, no compiled helper (built by
``pip install`` when a C compiler is there).
"""

from __future__ import annotations

import json
import mmap
import os
from pathlib import Path
from types import ModuleType

from .hashset_folders import MANIFEST
from .native import helper

ALGORITHMS = ("md5", "sha1", "sha256")  # examkit.hashformat.DIGESTS, in its order


class Answer:
    """The helper's answer (a plain class: ``typing`` and ``dataclasses`` cost more start-up
    time than this module saves)."""

    __slots__ = ("found", "given", "invalid", "set_name", "text")

    def __init__(self, text: bytes, found: int, given: int, invalid: int, set_name: str) -> None:
        self.text = text  # the tab-separated lines, as the numpy path writes them
        self.found = found  # query lines with at least one entry
        self.given = given  # non-blank query lines
        self.invalid = invalid  # of those, lines that are not an MD5, SHA-1 or SHA-256 in hex
        self.set_name = set_name


def _map(path: Path) -> mmap.mmap | None:
    """A read-only map; ``None`` for a missing or empty file (mmap refuses those)."""
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                return None
            return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        return None


def compiled_tsv(folder: Path, data: bytes | mmap.mmap, show_names: bool) -> Answer | None:
    """Look up every line of ``data`` in the set at ``folder``; ``None`` when the numpy
    path must answer instead (see the module's text). A set it cannot read (damaged,
    unreadable) is left to the numpy path too, which reports it as it always has."""
    module = helper()
    if module is None:
        return None
    try:
        return _answer(module, folder, data, show_names)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _answer(module: ModuleType, folder: Path, data: bytes | mmap.mmap, show_names: bool
            ) -> Answer | None:  # fmt: skip
    manifest = json.loads((folder / MANIFEST).read_text("utf-8"))
    columns = manifest["columns"]
    if columns.get("sizes") or columns.get("meta"):
        return None
    tables: list[tuple[mmap.mmap, mmap.mmap] | None] = []
    for algorithm in ALGORITHMS:
        digests = _map(folder / f"{algorithm}.digests")
        if algorithm not in manifest["algorithms"] or digests is None:
            tables.append(None)  # nothing to find (as the numpy path)
            continue
        entries = _map(folder / f"{algorithm}.entries")
        if entries is None:
            return None  # a damaged index: the numpy path reports it
        tables.append((digests, entries))
    spans: mmap.mmap | None = None
    blob: mmap.mmap | int | bytes = b""
    fd = -1
    try:
        if columns.get("names"):
            spans = _map(folder / "names.spans")
            if spans is None:
                return None
            if (folder / "names.bin").stat().st_size:
                fd = blob = os.open(folder / "names.bin", os.O_RDONLY)  # read with pread
        kind_hides = manifest["kind"] == "known_bad" and not show_names
        text, found, given, invalid = module.tsv(data, tuple(tables), spans, blob, kind_hides)
    finally:
        if fd >= 0:
            os.close(fd)
    if text is None:
        return None
    return Answer(text, found, given, invalid, manifest["name"])
