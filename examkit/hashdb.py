"""The compiled hash-set index: sorted fixed-width digest arrays, memory-mapped.

One folder per set::

    manifest.json          what the set is (see ``examkit.hashsets``)
    md5.digests            N x 16 bytes, sorted (likewise sha1 x 20, sha256 x 32)
    md5.entries            N x uint32: the entry each digest belongs to
    md5.prefix             N x uint64: first 8 bytes of each digest, for fast binary search
    names.bin/names.spans  optional: entry i's name is bin[spans[i,0]:spans[i,1]]
    sizes.i64              optional: entry sizes, -1 unknown
    meta.bin/meta.spans    optional: entry metadata as JSON

Lookups are vectorised: a batch of query digests is searched in the sorted
array with ``numpy.searchsorted`` (binary search in C over the mapped file),
never one query per file.
"""

from __future__ import annotations

import json
import mmap
from dataclasses import dataclass, field
from functools import cached_property
from operator import itemgetter
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
    array = np.memmap(path, dtype=dtype, mode="r", shape=shape)
    _random_access(getattr(array, "_mmap", None))
    return array


def _random_access(mapped: mmap.mmap | None) -> None:
    """Lookups touch a few scattered pages: no read-ahead around each."""
    if mapped is not None and hasattr(mmap, "MADV_RANDOM"):
        mapped.madvise(mmap.MADV_RANDOM)


def prefixes(digests: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each digest as a native unsigned integer (sorts like the bytes)."""
    width = digests.dtype.itemsize
    rows = digests.view(np.uint8).reshape(-1, width)
    return np.ascontiguousarray(rows[:, :8]).view(">u8").ravel().astype(np.uint64)


def hex_to_array(values: list[str], algorithm: str) -> tuple[np.ndarray, np.ndarray]:
    """Hex strings -> (array of raw digests, positions of the valid ones)."""
    width = 2 * DIGESTS[algorithm]
    keep = [i for i, v in enumerate(values) if v and len(v) == width]
    try:  # the usual case: every value is clean hex, decoded in one call
        joined = bytes.fromhex("".join(values[i] for i in keep))
        if len(joined) == len(keep) * DIGESTS[algorithm]:  # fromhex skips blanks
            return np.frombuffer(joined, dtype=digest_dtype(algorithm)), np.array(keep, np.intp)
    except ValueError:
        pass
    raw = bytearray()
    good = []
    for i in keep:
        try:
            value = bytes.fromhex(values[i])
        except ValueError:
            continue
        if len(value) == DIGESTS[algorithm]:
            raw += value
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
        order = np.argsort(queries)  # sorted queries walk the mapped table in order
        queries = queries[order]
        left, right, hits = self._search(algorithm, table, queries)
        if len(hits) == 0:
            return empty
        counts = np.minimum(right[hits] - left[hits], MAX_ENTRIES_PER_DIGEST)
        q_pos = np.repeat(hits, counts)
        starts = np.repeat(left[hits], counts)
        within = np.arange(len(q_pos)) - np.repeat(np.cumsum(counts) - counts, counts)
        rows = starts + within
        return order[q_pos], self.entries(algorithm)[rows].astype(np.int64)

    def _search(
        self, algorithm: str, table: np.ndarray, queries: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(left, right, hits)``: the range of each query in the table, and which are found.

        Binary search runs over the ``.prefix`` side table (the first 8 bytes of
        each digest as integers, fast to compare); the rare queries whose prefix
        is shared by other digests are searched again over the full digests.
        """
        prefix = _map(self.folder / f"{algorithm}.prefix", np.dtype("<u8"))
        if len(prefix) != len(table):  # an index written without the side table
            left = np.searchsorted(table, queries, side="left")
            found = left < len(table)
            found[found] = table[left[found]] == queries[found]
            hits = np.flatnonzero(found)
            right = np.zeros_like(left)
            right[hits] = np.searchsorted(table, queries[hits], side="right")
            return left, right, hits
        q_prefix = prefixes(queries)
        left = np.searchsorted(prefix, q_prefix, side="left")
        right = np.searchsorted(prefix, q_prefix, side="right")
        shared = np.flatnonzero(right - left > 1)
        if len(shared):  # several digests share the prefix: search those exactly
            left[shared] = np.searchsorted(table, queries[shared], side="left")
            right[shared] = np.searchsorted(table, queries[shared], side="right")
        candidates = np.flatnonzero(right > left)
        same = table[left[candidates]] == queries[candidates]
        return left, right, candidates[same]

    def _column(self, stem: str) -> tuple[np.ndarray, bytes | mmap.mmap] | None:
        if not self.manifest["columns"].get(stem):
            return None
        spans = _map(self.folder / f"{stem}.spans", np.dtype("<u8")).reshape(-1, 2)
        path = self.folder / f"{stem}.bin"
        if path.stat().st_size == 0:
            return spans, b""
        with open(path, "rb") as fh:
            blob = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        _random_access(blob)
        return spans, blob

    @cached_property
    def _names(self) -> tuple[np.ndarray, bytes | mmap.mmap] | None:
        return self._column("names")

    @cached_property
    def _meta(self) -> tuple[np.ndarray, bytes | mmap.mmap] | None:
        return self._column("meta")

    @cached_property
    def _sizes(self) -> np.ndarray | None:
        if not self.manifest["columns"].get("sizes"):
            return None
        return _map(self.folder / "sizes.i64", np.dtype("<i8"))

    def entry(self, entry: int) -> EntryRecord:
        """Name, size and metadata of one entry."""
        names, sizes, metas = self.columns([entry])
        return EntryRecord(entry, names[0], sizes[0], json.loads(metas[0]) if metas[0] else {})

    def columns(
        self, entries: list[int]
    ) -> tuple[list[bytes | None], list[int | None], list[bytes | None]]:
        """Names, sizes and raw JSON metadata of many entries, gathered in one step each."""
        wanted = np.asarray(entries, dtype=np.int64)
        none: list[None] = [None] * len(entries)
        names = _slices(self._names, wanted) or none
        metas = _slices(self._meta, wanted) or none
        sizes: list[int | None] = list(none)
        if self._sizes is not None:
            sizes = [s if s >= 0 else None for s in self._sizes[wanted].tolist()]
        return list(names), sizes, list(metas)


def _slices(
    column: tuple[np.ndarray, bytes | mmap.mmap] | None, wanted: np.ndarray
) -> list[bytes | None] | None:
    if column is None:
        return None
    spans, blob = column
    return [blob[a:b] if b > a else None for a, b in spans[wanted].tolist()]


def lookup_hex(index: HashSetIndex, values: list[str]) -> tuple[list[tuple[str, str, int]], int]:
    """Hex digests (any case; the algorithm follows from the length) found in the set.

    Returns ``(hex, algorithm, entry)`` per hit in the order given, and how
    many values were not an MD5, SHA-1 or SHA-256 in hex.
    """
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    found_at: list[np.ndarray] = []
    found_algorithm: list[np.ndarray] = []
    found_entry: list[np.ndarray] = []
    valid_count = 0
    names = list(DIGESTS)
    for number, (algorithm, width) in enumerate(DIGESTS.items()):
        positions = np.flatnonzero(lengths == 2 * width)
        if not len(positions):
            continue
        picked = itemgetter(*positions.tolist())(values) if len(positions) > 1 else None
        texts = list(picked) if picked is not None else [values[int(positions[0])]]
        queries, valid = hex_to_array(texts, algorithm)
        valid_count += len(valid)
        q_pos, entries = index.lookup(algorithm, queries)
        found_at.append(positions[valid[q_pos]])
        found_algorithm.append(np.full(len(q_pos), number))
        found_entry.append(entries)
    if not found_at:
        return [], len(values) - valid_count
    at, algo, entry = (np.concatenate(a) for a in (found_at, found_algorithm, found_entry))
    order = np.lexsort((entry, at))
    return [
        (values[i].lower(), names[a], e)
        for i, a, e in zip(
            at[order].tolist(), algo[order].tolist(), entry[order].tolist(), strict=True
        )
    ], len(values) - valid_count
