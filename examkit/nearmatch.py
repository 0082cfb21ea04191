"""Near-duplicate search over packed bit vectors (perceptual hashes: PDQ 256 bits, pHash 64).

Method: multi-index hashing (Norouzi, Punjani and Fleet). A vector of ``bits`` bits is cut
into ``chunks = bits // 16`` chunks of 16 bits; chunk ``k`` is bytes ``[2k, 2k + 2)`` of the
raw vector read big-endian as a ``uint16`` (so for a hex digest, chunk ``k`` is hex digits
``[4k, 4k + 4)``). For each chunk the index keeps the reference rows sorted by that chunk's
value (``positions``) and where each of the 65,536 values starts in that order (``offsets``),
so the rows whose chunk ``k`` equals ``v`` are ``positions[k, offsets[k, v]:offsets[k, v + 1]]``.

Guarantee (exact, by pigeonhole): if two vectors differ in at most ``threshold`` bits, the
differences are spread over ``chunks`` chunks, so at least one chunk differs in at most
``radius = threshold // chunks`` bits. A search therefore probes, for every chunk of every
query, each value within ``radius`` bits of the query's chunk (``chunk ^ mask`` for every
16-bit ``mask`` of popcount ``<= radius``); every pair within the threshold is among those
candidates. Candidates are then checked with their exact Hamming distance, so the answer is
exactly the set of pairs within the threshold: nothing is missed, nothing extra is reported.
A pair whose chunks are within the radius in several chunks is found several times; it is
kept only from the first such chunk, so each pair is reported once without a global sort.

Everything is vectorised with numpy per block of queries: the probe ranges of all chunks
and masks are gathered at once, expanded to candidate pairs with a cumulative sum, and the
distances are popcounts (``np.bitwise_count``) of XOR-ed machine words. Memory is bounded by
the number of probes per block and of candidate pairs per pass, not by the query count.

On disk (``save``/``load``), an index named ``stem`` is three raw little-endian arrays:
``stem.vectors`` (N x nbytes uint8), ``stem.mih_offsets`` (chunks x 65537 int64) and
``stem.mih_positions`` (chunks x N uint32), memory-mapped read-only when loaded.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

CHUNK_BITS = 16
VALUES = 1 << CHUNK_BITS  # distinct values of one chunk
PROBES_PER_BLOCK = 1 << 19  # (query, chunk, mask) probes gathered per block of queries
# Candidate pairs per pass: their gathered rows fill about 2 MiB, so the temporaries of a
# pass stay in cache and are reused by malloc (larger passes run twice as long here).
PASS_BYTES = 1 << 21

Array = npt.NDArray[Any]


def chunk_plan(bits: int, threshold: int) -> tuple[int, int]:
    """``(chunks, radius)``: the vector is cut into ``bits // 16`` chunks of 16 bits; by
    pigeonhole a pair within ``threshold`` has at least one chunk within
    ``radius = threshold // chunks`` bits."""
    if bits <= 0 or bits % CHUNK_BITS:
        raise ValueError(f"bits must be a positive multiple of {CHUNK_BITS}, not {bits}")
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, not {threshold}")
    chunks = bits // CHUNK_BITS
    return chunks, threshold // chunks


@lru_cache(maxsize=32)
def _masks(radius: int) -> Array:
    """Every 16-bit mask with at most ``radius`` bits set (read-only, computed once)."""
    values = np.arange(VALUES, dtype=np.uint16)
    masks = values[np.bitwise_count(values) <= radius]
    masks.setflags(write=False)
    return masks


def _word_dtype(nbytes: int) -> np.dtype[Any]:
    """The widest unsigned integer that tiles a row of ``nbytes`` bytes."""
    for dtype in (np.uint64, np.uint32, np.uint16):
        if nbytes % np.dtype(dtype).itemsize == 0:
            return np.dtype(dtype)
    return np.dtype(np.uint8)


def _words(rows: Array) -> Array:
    """``(n, nbytes)`` uint8 rows viewed as ``(n, words)`` machine words (no copy)."""
    rows = np.ascontiguousarray(rows)
    return rows.view(_word_dtype(rows.shape[1]))


def _distances(a: Array, b: Array) -> Array:
    """Row-wise popcount of ``a ^ b`` for two ``(n, words)`` arrays, as uint16."""
    if a.shape[0] == 0:
        return np.zeros(0, dtype=np.uint16)
    diff = np.bitwise_xor(a, b)
    counts = np.bitwise_count(diff)
    total = counts[:, 0].astype(np.uint16)
    for column in range(1, counts.shape[1]):
        total += counts[:, column]
    return total


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Hamming distance of two ``(n, nbytes)`` uint8 arrays (int64, shape ``(n,)``)."""
    a = np.asarray(a, dtype=np.uint8)
    b = np.asarray(b, dtype=np.uint8)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"expected two (n, nbytes) arrays of one shape: {a.shape}, {b.shape}")
    return _distances(_words(a), _words(b)).astype(np.int64)


def _check_rows(vectors: np.ndarray, nbytes: int | None = None) -> Array:
    rows = np.asarray(vectors)
    if rows.dtype != np.uint8 or rows.ndim != 2:
        raise ValueError(f"expected (n, nbytes) uint8 rows, not {rows.dtype} {rows.shape}")
    if nbytes is not None and rows.shape[1] != nbytes:
        raise ValueError(f"rows of {rows.shape[1]} bytes, index holds {nbytes}-byte vectors")
    chunk_plan(8 * rows.shape[1], 0)  # validates the width
    return np.ascontiguousarray(rows)


def _chunk_values(rows: Array) -> Array:
    """``(n, chunks)`` native uint16: chunk ``k`` is bytes ``[2k, 2k + 2)`` big-endian."""
    return rows.view(">u2").astype(np.uint16)


class NearIndex:
    """Multi-index hashing tables over reference vectors ``(N, nbytes)`` uint8.

    ``offsets`` ``(chunks, 65537)`` int64 (or uint32): where each chunk value's run starts
    in ``positions``; ``positions`` ``(chunks, N)`` uint32: reference row numbers sorted
    (stably) by that chunk's 16-bit value.
    """

    def __init__(self, vectors: np.ndarray, offsets: np.ndarray, positions: np.ndarray) -> None:
        self.vectors = _check_rows(vectors)
        self.count, self.nbytes = self.vectors.shape
        self.bits = 8 * self.nbytes
        self.chunks = self.bits // CHUNK_BITS
        if offsets.shape != (self.chunks, VALUES + 1):
            raise ValueError(f"offsets {offsets.shape}, expected {(self.chunks, VALUES + 1)}")
        if positions.shape != (self.chunks, self.count):
            raise ValueError(f"positions {positions.shape}, expected {(self.chunks, self.count)}")
        if (offsets[:, 0] != 0).any() or (offsets[:, -1] != self.count).any():
            raise ValueError(f"offsets do not span the {self.count} reference rows")
        self.offsets = offsets
        self.positions = positions
        self._offsets = offsets.reshape(-1)  # flat views: probe k, value v -> k * 65537 + v
        self._positions = positions.reshape(-1)  # run of chunk k starts at k * N
        self._words = _words(self.vectors)

    @classmethod
    def build(cls, vectors: np.ndarray) -> NearIndex:
        """Index the rows of ``vectors`` (``(N, nbytes)`` uint8, ``nbytes`` even)."""
        rows = _check_rows(vectors)
        if rows.shape[0] >= 1 << 32:
            raise ValueError("at most 2**32 - 1 reference vectors")
        chunks = rows.shape[1] // 2
        offsets = np.zeros((chunks, VALUES + 1), dtype=np.int64)
        positions = np.empty((chunks, rows.shape[0]), dtype=np.uint32)
        values = rows.view(">u2")
        for k in range(chunks):
            column = values[:, k].astype(np.uint16)
            positions[k] = np.argsort(column, kind="stable")
            np.cumsum(np.bincount(column, minlength=VALUES), out=offsets[k, 1:])
        return cls(rows, offsets, positions)

    def __len__(self) -> int:
        return int(self.count)

    def search(
        self, queries: np.ndarray, threshold: int, block: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All pairs ``(query_row, reference_row, distance)`` with Hamming distance
        ``<= threshold``, each pair once, sorted by (query_row, distance, reference_row).

        ``block`` is the number of queries per block (default: as many as keep the probes
        of a block under ``PROBES_PER_BLOCK``). Returns three int64 arrays.
        """
        rows = _check_rows(queries, self.nbytes)
        chunks, radius = chunk_plan(self.bits, threshold)
        masks = _masks(radius)
        if block is None:
            block = max(1, PROBES_PER_BLOCK // (chunks * len(masks)))
        if block < 1:
            raise ValueError(f"block must be >= 1, not {block}")
        found: list[tuple[Array, Array, Array]] = []
        if self.count and len(rows):
            for start in range(0, len(rows), block):
                found.extend(self._search_block(rows[start : start + block], threshold, start))
        if not found:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty.copy(), empty.copy()
        query = np.concatenate([f[0] for f in found])
        reference = np.concatenate([f[1] for f in found])
        distance = np.concatenate([f[2] for f in found])
        order = np.lexsort((reference, distance, query))
        return query[order], reference[order], distance[order]

    def _search_block(
        self, rows: Array, threshold: int, first: int
    ) -> list[tuple[Array, Array, Array]]:
        """Pairs of one block of query rows (numbered from ``first``)."""
        chunks, radius = chunk_plan(self.bits, threshold)
        masks = _masks(radius)
        query_chunks = _chunk_values(rows)  # (B, chunks)
        query_words = _words(rows)
        # Every probe (query, chunk, mask) at once: its run in the flat positions array.
        probe = (query_chunks[:, :, None] ^ masks[None, None, :]).astype(np.int64)
        probe += (np.arange(chunks, dtype=np.int64) * (VALUES + 1))[None, :, None]
        probe = probe.reshape(-1)
        starts = np.take(self._offsets, probe).astype(np.int64)
        lengths = np.take(self._offsets, probe + 1).astype(np.int64) - starts
        live = np.flatnonzero(lengths)
        del probe
        lengths = lengths[live]
        per_query = chunks * len(masks)
        starts = starts[live] + (live // len(masks) % chunks) * self.count  # flat positions
        owner = live // per_query  # query of each probe, within the block
        del live
        ends = np.cumsum(lengths)
        out: list[tuple[Array, Array, Array]] = []
        begin = 0
        per_pass = PASS_BYTES // max(8, self.nbytes)
        while begin < len(lengths):  # passes of at most per_pass candidate pairs
            base = ends[begin - 1] if begin else 0
            stop = int(np.searchsorted(ends, base + per_pass, side="right"))
            stop = max(stop, begin + 1)  # one run larger than a pass is a pass of its own
            pairs = self._check(
                starts[begin:stop],
                lengths[begin:stop],
                owner[begin:stop],
                query_words,
                query_chunks,
                threshold,
                radius,
            )
            if pairs is not None:
                q, r, d = pairs
                out.append((q + first, r, d))
            begin = stop
        return out

    def _check(
        self,
        starts: Array,
        lengths: Array,
        owner: Array,
        query_words: Array,
        query_chunks: Array,
        threshold: int,
        radius: int,
    ) -> tuple[Array, Array, Array] | None:
        """Exact distances of the candidates of some probe runs; the pairs within the
        threshold that were found through their first chunk within the radius."""
        total = int(lengths.sum())
        # Flat position of every candidate: runs laid end to end, by cumulative sum of steps.
        step = np.ones(total, dtype=np.int64)
        heads = np.zeros(len(lengths), dtype=np.int64)
        np.cumsum(lengths[:-1], out=heads[1:])
        step[heads[0]] = starts[0]
        step[heads[1:]] = starts[1:] - (starts[:-1] + lengths[:-1] - 1)
        flat = np.cumsum(step, out=step)
        # np.take, not fancy indexing: several times faster for random rows of a big array.
        reference = np.take(self._positions, flat).astype(np.intp)
        query = np.repeat(owner, lengths)
        distance = _distances(
            np.take(self._words, reference, axis=0), np.take(query_words, query, axis=0)
        )
        keep = np.flatnonzero(distance <= threshold)
        if not len(keep):
            return None
        query, reference, distance = query[keep], reference[keep], distance[keep]
        chunk = flat[keep] // self.count
        # De-duplicate: keep a pair only from the first chunk within the radius.
        near = _chunk_values(np.take(self.vectors, reference, axis=0)) ^ query_chunks[query]
        first_near = np.argmax(np.bitwise_count(near) <= radius, axis=1)
        keep = first_near == chunk
        return (
            query[keep].astype(np.int64),
            reference[keep].astype(np.int64),
            distance[keep].astype(np.int64),
        )


_SUFFIXES = ("vectors", "mih_offsets", "mih_positions")


def save(index: NearIndex, folder: Path, stem: str) -> None:
    """Write ``stem.vectors``, ``stem.mih_offsets``, ``stem.mih_positions`` (raw
    little-endian arrays) into ``folder``; each file is written whole, then renamed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = (
        np.ascontiguousarray(index.vectors, dtype=np.uint8),
        np.ascontiguousarray(index.offsets, dtype="<i8"),
        np.ascontiguousarray(index.positions, dtype="<u4"),
    )
    for suffix, array in zip(_SUFFIXES, arrays, strict=True):
        path = folder / f"{stem}.{suffix}"
        temporary = path.with_name(path.name + ".tmp")
        with open(temporary, "wb") as fh:
            array.tofile(fh)
        os.replace(temporary, path)


def _map(path: Path, dtype: str, shape: tuple[int, ...]) -> Array:
    """A read-only memory map of ``shape``; an empty array when the shape holds nothing."""
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if path.stat().st_size != expected:
        raise ValueError(f"{path}: {path.stat().st_size} bytes, expected {expected}")
    if expected == 0:  # an empty file cannot be mapped
        return np.zeros(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=shape)


def load(folder: Path, stem: str, nbytes: int) -> NearIndex | None:
    """The index ``stem`` saved in ``folder`` for ``nbytes``-byte vectors, memory-mapped
    read-only; None if any of its files is absent."""
    paths = [Path(folder) / f"{stem}.{suffix}" for suffix in _SUFFIXES]
    if not all(p.is_file() for p in paths):
        return None
    chunks, _ = chunk_plan(8 * nbytes, 0)
    size = paths[0].stat().st_size
    if size % nbytes:
        raise ValueError(f"{paths[0]}: {size} bytes is not a whole number of {nbytes}-byte rows")
    count = size // nbytes
    return NearIndex(
        _map(paths[0], "u1", (count, nbytes)),
        _map(paths[1], "<i8", (chunks, VALUES + 1)),
        _map(paths[2], "<u4", (chunks, count)),
    )
