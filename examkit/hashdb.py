"""The compiled hash-set index: sorted fixed-width digest arrays, memory-mapped.

One folder per set::

    manifest.json          what the set is (see ``examkit.hashsets``)
    md5.digests            N x 16 bytes, sorted (likewise sha1 x 20, sha256 x 32)
    md5.entries            N x uint32: the entry each digest belongs to
    names.bin/names.spans  optional: entry i's name is bin[spans[i,0]:spans[i,1]]
    sizes.i64              optional: entry sizes, -1 unknown
    meta.bin/meta.spans    optional: entry metadata as JSON

Lookups are vectorised: a batch of query digests is searched in the sorted
array with ``numpy.searchsorted`` (binary search in C over the mapped file),
never one query per file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .hashformat import DIGESTS

MANIFEST = "manifest.json"
INDEX_FORMAT = 1
MAX_ENTRIES_PER_DIGEST = 16  # a digest listed more often reports its first 16 entries


def digest_dtype(algorithm: str) -> np.dtype[Any]:
    return np.dtype(f"S{DIGESTS[algorithm]}")


def _map(path: Path, dtype: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A read-only memory map; an empty array for an empty or missing file."""
    if not path.exists() or path.stat().st_size == 0:
        return np.zeros((0,) + (shape[1:] if shape else ()), dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=shape)


def hex_to_array(values: list[str], algorithm: str) -> tuple[np.ndarray, np.ndarray]:
    """Hex strings -> (array of raw digests, positions of the valid ones)."""
    width = 2 * DIGESTS[algorithm]
    keep = [i for i, v in enumerate(values) if v and len(v) == width]
    raw = bytearray()
    good = []
    for i in keep:
        try:
            raw += bytes.fromhex(values[i])
        except ValueError:
            continue
        good.append(i)
    return np.frombuffer(bytes(raw), dtype=digest_dtype(algorithm)), np.array(good, np.intp)


@dataclass(frozen=True)
class EntryRecord:
    """What a set says about one entry."""

    entry: int
    name: bytes | None = None
    size: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class HashSetIndex:
    """A compiled set opened for lookups (cheap to open: nothing is read until used)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.manifest: dict[str, Any] = json.loads((self.folder / MANIFEST).read_text("utf-8"))

    @property
    def algorithms(self) -> list[str]:
        return [a for a in DIGESTS if a in self.manifest["algorithms"]]

    def digests(self, algorithm: str) -> np.ndarray:
        return _map(self.folder / f"{algorithm}.digests", digest_dtype(algorithm))

    def entries(self, algorithm: str) -> np.ndarray:
        return _map(self.folder / f"{algorithm}.entries", np.dtype("<u4"))

    def lookup(self, algorithm: str, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Search raw digests; returns ``(query_positions, entries)``, one pair per hit.

        A digest the set lists several times yields up to
        ``MAX_ENTRIES_PER_DIGEST`` pairs, in entry order.
        """
        empty = (np.zeros(0, np.intp), np.zeros(0, np.int64))
        if algorithm not in self.manifest["algorithms"] or len(queries) == 0:
            return empty
        table = self.digests(algorithm)
        if len(table) == 0:
            return empty
        queries = np.asarray(queries, dtype=digest_dtype(algorithm))
        left = np.searchsorted(table, queries, side="left")
        found = left < len(table)
        found[found] = table[left[found]] == queries[found]
        hits = np.flatnonzero(found)
        if len(hits) == 0:
            return empty
        right = np.searchsorted(table, queries[hits], side="right")
        counts = np.minimum(right - left[hits], MAX_ENTRIES_PER_DIGEST)
        q_pos = np.repeat(hits, counts)
        starts = np.repeat(left[hits], counts)
        within = np.arange(len(q_pos)) - np.repeat(np.cumsum(counts) - counts, counts)
        rows = starts + within
        return q_pos, self.entries(algorithm)[rows].astype(np.int64)

    @cached_property
    def _names(self) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.manifest["columns"].get("names"):
            return None
        spans = _map(self.folder / "names.spans", np.dtype("<u8"))
        blob = _map(self.folder / "names.bin", np.dtype("u1"))
        return spans.reshape(-1, 2), blob

    @cached_property
    def _meta(self) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.manifest["columns"].get("meta"):
            return None
        spans = _map(self.folder / "meta.spans", np.dtype("<u8"))
        blob = _map(self.folder / "meta.bin", np.dtype("u1"))
        return spans.reshape(-1, 2), blob

    @cached_property
    def _sizes(self) -> np.ndarray | None:
        if not self.manifest["columns"].get("sizes"):
            return None
        return _map(self.folder / "sizes.i64", np.dtype("<i8"))

    def entry(self, entry: int) -> EntryRecord:
        """Name, size and metadata of one entry."""
        name = None
        if self._names is not None:
            spans, blob = self._names
            start, end = (int(x) for x in spans[entry])
            name = bytes(blob[start:end]) if end > start else None
        meta: dict[str, Any] = {}
        if self._meta is not None:
            spans, blob = self._meta
            start, end = (int(x) for x in spans[entry])
            if end > start:
                meta = json.loads(bytes(blob[start:end]))
        size = None
        if self._sizes is not None:
            value = int(self._sizes[entry])
            size = value if value >= 0 else None
        return EntryRecord(entry, name, size, meta)
