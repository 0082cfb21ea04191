"""Compile a hash set into the on-disk index (``examkit.hashdb``) with bounded memory.

:class:`IndexWriter` is the :class:`~examkit.hashformat.EntrySink` that loaders
write to. Entries are numbered in the order they arrive; per-entry columns
(names, sizes, metadata) are appended to files as they come. Digests are partitioned
by their first byte into 256 buckets, held in memory up to ``SPILL_BYTES`` per
algorithm and then appended to bucket files; finishing sorts each bucket on its own, so a set
of hundreds of millions of entries compiles in a few hundred MB.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from . import native
from .hashdb import digest_dtype, prefixes
from .hashformat import DIGESTS, PERCEPTUAL, MalformedInput

FLUSH_ENTRIES = 65536  # entries buffered by ``add`` before they become arrays
SPILL_BYTES = 192 << 20  # digest bytes per algorithm held in memory before spilling
KEEP_MALFORMED = 10  # malformed lines quoted in the import report


def sort_digests(digests: np.ndarray, entries: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Sort by (digest, entry); returns the sorted arrays and the number of unique digests.

    ``entries`` must ascend in input order. Sorts one uint64 per item (the
    digest's first bits packed with the item's position), then repairs the
    rare runs whose packed prefixes tie but whose digests differ.
    """
    n = len(digests)
    if n == 0:
        return digests, entries, 0
    width = digests.dtype.itemsize
    rows = digests.view(np.uint8).reshape(n, width)
    bits = max(1, (n - 1).bit_length())
    high = np.ascontiguousarray(rows[:, :8]).view(">u8").ravel().astype(np.uint64)
    high >>= np.uint64(bits)
    packed = (high << np.uint64(bits)) | np.arange(n, dtype=np.uint64)
    packed.sort()
    order = (packed & np.uint64((1 << bits) - 1)).astype(np.intp)
    del packed
    sorted_high = high[order]
    tied = np.flatnonzero(sorted_high[1:] == sorted_high[:-1])
    duplicates = 0
    if len(tied):
        same = (rows[order[tied]] == rows[order[tied + 1]]).all(axis=1)
        duplicates = int(np.count_nonzero(same))
        done = -1
        for i in tied[~same]:
            if i <= done:
                continue
            start, end = int(i), int(i) + 1
            while start > 0 and sorted_high[start - 1] == sorted_high[i]:
                start -= 1
            while end + 1 < n and sorted_high[end + 1] == sorted_high[i]:
                end += 1
            group = sorted(order[start : end + 1], key=lambda k: (rows[k].tobytes(), k))
            order[start : end + 1] = group
            done = end
        if done >= 0:  # a repaired run: count duplicates again on the final order
            final = rows[order]
            duplicates = int(np.count_nonzero((final[1:] == final[:-1]).all(axis=1)))
    ordered = np.take(rows, order, axis=0).view(digests.dtype).ravel()
    return ordered, entries[order], n - duplicates


@dataclass
class _Digests:
    """Digests of one algorithm, partitioned by first byte into 256 buckets.

    Buckets live in memory until ``SPILL_BYTES`` are held, then are appended to
    bucket files. Sorting bucket by bucket keeps every sort small and in cache.
    """

    algorithm: str
    folder: Path
    buckets: list[list[tuple[np.ndarray, np.ndarray]]] = field(
        default_factory=lambda: [[] for _ in range(256)]
    )
    held_bytes: int = 0
    spilled: bool = False
    count: int = 0

    def add(self, digests: np.ndarray, entries: np.ndarray) -> None:
        width = digests.dtype.itemsize
        first = digests.view(np.uint8)[::width]
        order = np.argsort(first, kind="stable")
        bounds = np.searchsorted(first[order], np.arange(257))
        rows = np.take(digests.view(np.uint8).reshape(-1, width), order, axis=0)
        d = rows.view(digests.dtype).ravel()
        e = entries.astype(np.uint32, copy=False)[order]
        for b in np.flatnonzero(bounds[1:] > bounds[:-1]):
            lo, hi = bounds[b], bounds[b + 1]
            self.buckets[b].append((d[lo:hi], e[lo:hi]))
        self.held_bytes += d.nbytes
        self.count += len(d)
        if self.held_bytes >= SPILL_BYTES:
            self._spill()

    def _bucket_file(self, b: int) -> Path:
        return self.folder / f"{self.algorithm}.b{b:02x}"

    def _records(self, pieces: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        rec = np.empty(
            sum(len(p[0]) for p in pieces),
            dtype=[("d", digest_dtype(self.algorithm)), ("e", "<u4")],
        )
        pos = 0
        for d, e in pieces:
            rec["d"][pos : pos + len(d)] = d
            rec["e"][pos : pos + len(d)] = e
            pos += len(d)
        return rec

    def _spill(self) -> None:
        self.spilled = True
        for b, pieces in enumerate(self.buckets):
            if pieces:
                with open(self._bucket_file(b), "ab") as fh:
                    self._records(pieces).tofile(fh)
                self.buckets[b] = []
        self.held_bytes = 0

    def finish(self) -> int:
        """Write ``<algo>.digests``, ``.entries`` and ``.prefix``; returns the unique count.

        Buckets are sorted two at a time in threads (numpy sorts without the
        GIL) and written in bucket order.
        """
        unique = 0
        with (
            open(self.folder / f"{self.algorithm}.digests", "wb") as fd,
            open(self.folder / f"{self.algorithm}.entries", "wb") as fe,
            open(self.folder / f"{self.algorithm}.prefix", "wb") as fp,
            ThreadPoolExecutor(max_workers=2) as pool,
        ):
            window: deque[Future[tuple[np.ndarray, np.ndarray, int]]] = deque()
            for b in range(256):
                pieces = self._load(b)
                if pieces is not None:
                    window.append(pool.submit(sort_digests, *pieces))
                while len(window) > 2 or (b == 255 and window):
                    d, e, count = window.popleft().result()
                    unique += count
                    d.tofile(fd)
                    e.astype("<u4", copy=False).tofile(fe)
                    prefixes(d).astype("<u8", copy=False).tofile(fp)
        return unique

    def _load(self, b: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Bucket ``b``'s digests and entries (from its spill file and memory), or None."""
        pieces = self.buckets[b]
        self.buckets[b] = []
        path = self._bucket_file(b)
        if path.exists():
            stored = np.fromfile(path, dtype=[("d", digest_dtype(self.algorithm)), ("e", "<u4")])
            path.unlink()
            pieces = [(stored["d"], stored["e"]), *pieces]
        if not pieces:
            return None
        if len(pieces) == 1:
            d, e = pieces[0]
        else:
            d = np.concatenate([p[0] for p in pieces])
            e = np.concatenate([p[1] for p in pieces])
        return np.ascontiguousarray(d), np.ascontiguousarray(e)


class _Column:
    """A per-entry byte-string column: a blob plus (start, end) spans.

    Nothing is written until an entry has a value; earlier entries then get
    empty spans, so a column no entry uses costs nothing.
    """

    def __init__(self, folder: Path, stem: str) -> None:
        self.folder, self.stem = folder, stem
        self.blob: BinaryIO | None = None
        self.spans: BinaryIO | None = None
        self.offset = 0
        self.empty_before = 0  # entries seen before the first value

    @property
    def used(self) -> bool:
        return self.blob is not None

    def append(self, blob: bytes | memoryview, spans: np.ndarray | None, n: int) -> None:
        if self.blob is None or self.spans is None:
            if spans is None or not np.any(spans[:, 1] > spans[:, 0]):
                self.empty_before += n
                return
            self.blob = open(self.folder / f"{self.stem}.bin", "wb")  # noqa: SIM115 - closed in close()
            self.spans = open(self.folder / f"{self.stem}.spans", "wb")  # noqa: SIM115
            np.zeros((self.empty_before, 2), "<u8").tofile(self.spans)
        if spans is None:
            spans = np.zeros((n, 2), np.uint64)
        elif len(blob):
            blob, spans = _compacted(blob, spans)
        if len(blob):
            self.blob.write(blob)
        (spans.astype(np.uint64, copy=False) + np.uint64(self.offset)).astype(
            "<u8", copy=False
        ).tofile(self.spans)
        self.offset += len(blob)

    def close(self) -> None:
        for fh in (self.blob, self.spans):
            if fh is not None:
                fh.close()


def _compacted(
    blob: bytes | memoryview, spans: np.ndarray
) -> tuple[bytes | memoryview, np.ndarray]:
    """Only the bytes the spans pick out of ``blob``, end to end, with their new spans: the
    md5sum loader hands over whole chunks of the source, and the digests between the names
    need not be stored twice. Left as they are without the compiled helper."""
    module = native.helper()
    if module is None or len(spans) == 0:
        return blob, spans
    lengths = spans[:, 1].astype(np.int64) - spans[:, 0].astype(np.int64)
    if int(np.maximum(lengths, 0).sum()) > 0.9 * len(blob):
        return blob, spans  # already (nearly) names only
    names, places = module.compact(blob, np.ascontiguousarray(spans, dtype="<u8"))
    return names, np.frombuffer(places, "<u8").reshape(-1, 2)


@dataclass
class ImportStats:
    entries: int = 0
    algorithms: dict[str, dict[str, int]] = field(default_factory=dict)
    malformed: int = 0
    malformed_examples: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, bool] = field(default_factory=dict)


class IndexWriter:
    """The sink loaders write to; ``finish`` leaves a complete index in ``folder``."""

    def __init__(self, folder: Path, strict: bool = False) -> None:
        self.folder = Path(folder)
        self.strict = strict
        self.stats = ImportStats()
        self._digests = {a: _Digests(a, self.folder) for a in DIGESTS}
        self._names = _Column(self.folder, "names")
        self._meta = _Column(self.folder, "meta")
        self._sizes: BinaryIO | None = None
        self._sizes_before = 0
        self._buffer: list[tuple[dict[str, bytes], bytes | None, int, bytes | None]] = []
        # perceptual vectors stay in memory (32 bytes a PDQ entry) until finish builds the
        # multi-index tables of examkit.nearmatch
        self._vectors: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {a: [] for a in PERCEPTUAL}

    # -- EntrySink -------------------------------------------------------
    def add(
        self,
        *,
        md5: str | bytes | None = None,
        sha1: str | bytes | None = None,
        sha256: str | bytes | None = None,
        name: str | bytes | None = None,
        size: int | None = None,
        meta: Mapping[str, Any] | None = None,
        line: int | None = None,
        pdq: str | bytes | None = None,
        phash: str | bytes | None = None,
    ) -> bool:
        digests: dict[str, bytes] = {}
        for algorithm, value in (("md5", md5), ("sha1", sha1), ("sha256", sha256), ("pdq", pdq),
                                 ("phash", phash)):  # fmt: skip
            if value is None or value == "" or value == b"":
                continue
            raw = _raw_digest(value, DIGESTS.get(algorithm) or PERCEPTUAL[algorithm])
            if raw is None:
                self.malformed(line, f"not a valid {algorithm} digest", _short(value))
                return False
            digests[algorithm] = raw
        if not digests:
            self.malformed(line, "no digest", None)
            return False
        encoded = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name
        clean = {k: v for k, v in (meta or {}).items() if v is not None and v != "" and v != []}
        meta_bytes = (
            json.dumps(clean, sort_keys=True, ensure_ascii=False).encode() if clean else None
        )
        self._buffer.append((digests, encoded, -1 if size is None else int(size), meta_bytes))
        if len(self._buffer) >= FLUSH_ENTRIES:
            self._flush()
        return True

    def add_columns(
        self,
        digests: Mapping[str, np.ndarray],
        names_blob: bytes | memoryview | None = None,
        name_spans: np.ndarray | None = None,
        sizes: np.ndarray | None = None,
    ) -> None:
        self._flush()
        n = len(next(iter(digests.values()))) if digests else 0
        if n == 0:
            return
        base = self.stats.entries
        entries = np.arange(base, base + n, dtype=np.int64)
        for algorithm, values in digests.items():
            self._digests[algorithm].add(np.asarray(values, digest_dtype(algorithm)), entries)
        self._names.append(names_blob or b"", name_spans, n)
        self._meta.append(b"", None, n)
        self._append_sizes(sizes, n)
        self.stats.entries += n

    def malformed(self, line: int | None, reason: str, text: str | bytes | None = None) -> None:
        self.stats.malformed += 1
        where = f"line {line}" if line is not None else "an entry"  # line or record number
        if self.strict:
            raise MalformedInput(
                f"malformed hash-set entry at {where}: {reason}",
                "fix the file, or import without --strict to skip bad lines",
            )
        if len(self.stats.malformed_examples) < KEEP_MALFORMED:
            shown = text.decode("latin-1") if isinstance(text, bytes) else text
            self.stats.malformed_examples.append(
                {"line": line, "reason": reason, "text": (shown or "")[:120]}
            )

    def provenance(self, **values: Any) -> None:
        self.stats.provenance.update({k: v for k, v in values.items() if v is not None})

    # -- internals -------------------------------------------------------
    def _append_sizes(self, sizes: np.ndarray | None, n: int) -> None:
        if self._sizes is None:
            if sizes is None or not np.any(sizes >= 0):
                self._sizes_before += n
                return
            self._sizes = open(self.folder / "sizes.i64", "wb")  # noqa: SIM115 - closed in finish()
            np.full(self._sizes_before, -1, "<i8").tofile(self._sizes)
        if sizes is None:
            sizes = np.full(n, -1, np.int64)
        sizes.astype("<i8", copy=False).tofile(self._sizes)

    def _flush(self) -> None:
        if not self._buffer:
            return
        buffer, self._buffer = self._buffer, []
        base = self.stats.entries
        for algorithm, width in DIGESTS.items():
            rows = [(i, d[algorithm]) for i, (d, *_rest) in enumerate(buffer) if algorithm in d]
            if rows:
                raw = np.frombuffer(b"".join(r[1] for r in rows), dtype=f"S{width}")
                self._digests[algorithm].add(raw, np.array([base + r[0] for r in rows]))
        for algorithm, width in PERCEPTUAL.items():
            rows = [(i, d[algorithm]) for i, (d, *_rest) in enumerate(buffer) if algorithm in d]
            if rows:
                raw = np.frombuffer(b"".join(r[1] for r in rows), np.uint8).reshape(-1, width)
                numbers = np.array([base + r[0] for r in rows], dtype=np.uint32)
                self._vectors[algorithm].append((raw, numbers))
        for column, values in (
            (self._names, [row[1] or b"" for row in buffer]),
            (self._meta, [row[3] or b"" for row in buffer]),
        ):
            lengths = np.array([len(v) for v in values], dtype=np.uint64)
            ends = np.cumsum(lengths, dtype=np.uint64)
            column.append(b"".join(values), np.stack([ends - lengths, ends], axis=1), len(buffer))
        self._append_sizes(np.array([row[2] for row in buffer], dtype=np.int64), len(buffer))
        self.stats.entries += len(buffer)

    def finish(self) -> ImportStats:
        """Sort and write every digest array; drop the columns no entry used."""
        self._flush()
        self._names.close()
        self._meta.close()
        if self._sizes is not None:
            self._sizes.close()
        for algorithm, digests in self._digests.items():
            if digests.count:
                unique = digests.finish()
                self.stats.algorithms[algorithm] = {"count": digests.count, "unique": unique}
        for algorithm, parts in self._vectors.items():
            if parts:
                self.stats.algorithms[algorithm] = _write_vectors(self.folder, algorithm, parts)
        self.stats.columns = {
            "names": self._names.used,
            "meta": self._meta.used,
            "sizes": self._sizes is not None,
        }
        return self.stats


def _write_vectors(
    folder: Path, algorithm: str, parts: list[tuple[np.ndarray, np.ndarray]]
) -> dict[str, int]:
    """Perceptual vectors with their entry numbers, and the multi-index tables over them;
    returns their count and how many are distinct."""
    from .nearmatch import NearIndex, save

    vectors = np.concatenate([p[0] for p in parts])
    entries = np.concatenate([p[1] for p in parts]).astype("<u4")
    save(NearIndex.build(vectors), folder, algorithm)
    entries.tofile(folder / f"{algorithm}.vector_entries")
    unique = len(np.unique(vectors.view(f"V{vectors.shape[1]}").ravel()))
    return {"count": len(vectors), "unique": unique}


def _raw_digest(value: str | bytes, width: int) -> bytes | None:
    if isinstance(value, bytes) and len(value) == width:
        return value
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    text = text.strip()
    if len(text) != 2 * width:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def _short(value: str | bytes) -> str:
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return text[:80]
