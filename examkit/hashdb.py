"""The compiled hash-set index: sorted fixed-width digest arrays, memory-mapped.

One folder per set::

    manifest.json          what the set is (see ``examkit.hashsets``)
    md5.digests            N x 16 bytes, sorted (likewise sha1 x 20, sha256 x 32)
    md5.entries            N x uint32: the entry each digest belongs to
    md5.prefix             N x uint64: first 8 bytes of each digest, for fast binary search
    names.bin/names.spans  optional: entry i's name is bin[spans[i,0]:spans[i,1]]
    sizes.i64              optional: entry sizes, -1 unknown
    meta.bin/meta.spans    optional: entry metadata as JSON
    pdq.vectors            optional: N x 32 bytes of PDQ hashes, in entry order (likewise
                           phash x 8), with pdq.vector_entries (N x uint32) and the
                           multi-index tables pdq.mih_offsets / pdq.mih_positions
                           (``examkit.nearmatch``) for searches by Hamming distance

Lookups are vectorised: a batch of query digests is searched in the sorted
array with ``numpy.searchsorted`` (binary search in C over the mapped file),
or, for a scan's exact matching, by the compiled helper (``HashSetIndex.find``),
never one query per file.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .hashformat import DIGESTS, PERCEPTUAL
from .hashset_folders import MANIFEST
from .lazy import LazyModule
from .native import helper

if TYPE_CHECKING:
    import numpy as np
else:  # a scan's parent hands out its first streams before it needs numpy
    np = LazyModule("numpy")

INDEX_FORMAT = 1
MAX_ENTRIES_PER_DIGEST = 16  # a digest listed more often reports its first 16 entries


def digest_dtype(algorithm: str) -> np.dtype[Any]:
    return np.dtype(f"S{DIGESTS[algorithm]}")


def _map(path: Path, dtype: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A read-only memory map; an empty array for an empty or missing file.

    Most are made for one lookup and dropped after it (pages a long scan's lookups touched
    would otherwise stay in its memory; see ``HashSetIndex._raw_table``), so made lean:
    ``mmap`` under ``numpy.frombuffer``, 55 microseconds against 197 for ``numpy.memmap``
    (which also reopens the file by name); the array holds the map, closed with it."""
    return _as_array(_raw_map(path), dtype, shape)


def _raw_map(path: Path) -> mmap.mmap | None:
    """A read-only map of a whole file; ``None`` for a missing or empty one."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        return mmap.mmap(fd, size, access=mmap.ACCESS_READ) if size else None
    finally:
        os.close(fd)


def _as_array(mapped: mmap.mmap | None, dtype: Any, shape: tuple[int, ...] | None = None
              ) -> np.ndarray:  # fmt: skip
    """A map's bytes as an array (no copy); an empty array for no map."""
    if mapped is None:
        return np.zeros((0,) + (shape[1:] if shape else ()), dtype=dtype)
    array = np.frombuffer(mapped, dtype=dtype)
    return array.reshape(shape) if shape else array


def prefixes(digests: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each digest as a native unsigned integer (sorts like the bytes)."""
    width = digests.dtype.itemsize
    rows = digests.view(np.uint8).reshape(-1, width)
    return np.ascontiguousarray(rows[:, :8]).view(">u8").ravel().astype(np.uint64)


def hex_to_raw(values: list[str], algorithm: str) -> tuple[bytes, list[int]]:
    """Hex strings -> (their raw digests end to end, positions of the valid ones)."""
    width = 2 * DIGESTS[algorithm]
    whole = set(map(len, values)) == {width}  # the usual case: every value full width
    keep = (
        range(len(values)) if whole else [i for i, v in enumerate(values) if v and len(v) == width]
    )
    try:  # the usual case: every value kept is clean hex, decoded in one call
        joined = bytes.fromhex("".join(values) if whole else "".join(values[i] for i in keep))
        if len(joined) == len(keep) * DIGESTS[algorithm]:  # fromhex skips blanks
            return joined, list(keep)
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
    return bytes(raw), good


def hex_to_array(values: list[str], algorithm: str) -> tuple[np.ndarray, np.ndarray]:
    """Hex strings -> (array of raw digests, positions of the valid ones)."""
    raw, good = hex_to_raw(values, algorithm)
    return np.frombuffer(raw, dtype=digest_dtype(algorithm)), np.asarray(good, np.intp)


@dataclass(frozen=True)
class EntryRecord:
    """What a set says about one entry."""

    entry: int
    name: bytes | None = None
    size: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


KEEP_MAPPED = 32 << 20  # bytes of lookup tables one process keeps mapped between lookups


class _Budget:
    """How many bytes of maps the open indexes keep, against ``KEEP_MAPPED``."""

    def __init__(self) -> None:
        self.used = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        with self._lock:
            if self.used + size > KEEP_MAPPED:
                return False
            self.used += size
            return True

    def give(self, size: int) -> None:
        with self._lock:
            self.used -= size


_KEPT = _Budget()


class HashSetIndex:
    """A compiled set opened for lookups (cheap to open: nothing is read until used)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.manifest: dict[str, Any] = json.loads((self.folder / MANIFEST).read_text("utf-8"))
        self._near_cache: dict[str, tuple[Any, np.ndarray] | None] = {}
        self._kept: dict[str, mmap.mmap] = {}  # search tables kept mapped (see _raw_table)

    @property
    def algorithms(self) -> list[str]:
        return [a for a in DIGESTS if a in self.manifest["algorithms"]]

    def digests(self, algorithm: str) -> np.ndarray:
        return self._table(f"{algorithm}.digests", digest_dtype(algorithm))

    def entries(self, algorithm: str) -> np.ndarray:
        # read for hits only: mapped per lookup (kept, its pages stayed in the process as
        # hits touched them: 303 MiB peak against 281 at 100,000 hits in a 5M-entry set)
        return self._table(f"{algorithm}.entries", np.dtype("<u4"), keep=False)

    def _table(self, name: str, dtype: Any, keep: bool = True) -> np.ndarray:
        """A search table of the set (digests, prefixes) as an array over its map
        (``_raw_table``)."""
        return _as_array(self._raw_table(name, keep), dtype)

    def _raw_table(self, name: str, keep: bool = True) -> mmap.mmap | None:
        """A table of the set, mapped (None when empty or missing). Kept mapped for the
        next lookups while the tables this process keeps stay within ``KEEP_MAPPED`` bytes
        in all (a map made per lookup costs its first touch of every page again: 2.2-2.4 ms
        against 0.4 ms for 256 queries in a 1,000,000-digest set, 219 page faults each
        time); larger ones, and those not to ``keep``, are mapped for each lookup, so the
        pages a long scan touches stay bounded."""
        mapped = self._kept.get(name)
        if mapped is None:
            mapped = _raw_map(self.folder / name)
            if keep and mapped is not None and _KEPT.take(len(mapped)):
                self._kept[name] = mapped
                weakref.finalize(self, _KEPT.give, len(mapped))
        return mapped

    def find(self, algorithm: str, raw: bytes) -> list[tuple[int, int]] | None:
        """Search raw digests (end to end) with the compiled helper: ``(query, entry)``
        pairs, by query, then entry number (``lookup``'s hits, in that order); ``None``
        when the helper was not built (``lookup`` answers then). No numpy: a scan's parent
        that matches only exact digests never imports it (0.2-0.3 s of its start, spent
        while the listing starts and the first results wait)."""
        module = helper()
        if module is None:
            return None
        if algorithm not in self.manifest["algorithms"] or not raw:
            return []
        digests = self._raw_table(f"{algorithm}.digests")
        if digests is None:
            return []
        entries = self._raw_table(f"{algorithm}.entries", keep=False)  # (see ``entries``)
        pairs: list[tuple[int, int]] = module.lookup(
            digests, entries if entries is not None else b"", DIGESTS[algorithm], raw
        )
        return pairs

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
        order = np.argsort(prefixes(queries))  # sorted queries walk the table in order
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
        prefix = self._table(f"{algorithm}.prefix", np.dtype("<u8"))
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
        right = left + (prefix[np.minimum(left, len(prefix) - 1)] == q_prefix)
        nxt = np.minimum(left + 1, len(prefix) - 1)
        shared = np.flatnonzero((left + 1 < len(prefix)) & (prefix[nxt] == q_prefix))
        if len(shared):  # several digests share the prefix: search those exactly
            left[shared] = np.searchsorted(table, queries[shared], side="left")
            right[shared] = np.searchsorted(table, queries[shared], side="right")
        candidates = np.flatnonzero(right > left)
        same = table[left[candidates]] == queries[candidates]
        return left, right, candidates[same]

    def near(self, algorithm: str, queries: np.ndarray, threshold: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """Perceptual search: ``(query_rows, entries, distances)`` of every entry whose
        ``algorithm`` hash (``pdq`` or ``phash``) is within ``threshold`` bits of a query
        (rows of raw hash bytes), nearest first for each query."""
        empty = (np.zeros(0, np.intp), np.zeros(0, np.int64), np.zeros(0, np.int64))
        tables = self._near(algorithm)
        if tables is None or len(queries) == 0:
            return empty
        index, entries = tables
        rows, refs, distances = index.search(queries, threshold)
        return rows, entries[refs].astype(np.int64), distances.astype(np.int64)

    def _near(self, algorithm: str) -> tuple[Any, np.ndarray] | None:
        if algorithm not in self._near_cache:
            from .nearmatch import load

            loaded = None
            if algorithm in self.manifest["algorithms"]:
                index = load(self.folder, algorithm, PERCEPTUAL[algorithm])
                if index is not None:
                    entries = _map(self.folder / f"{algorithm}.vector_entries", np.dtype("<u4"))
                    loaded = (index, entries)
            self._near_cache[algorithm] = loaded
        return self._near_cache[algorithm]

    def _column(self, stem: str) -> tuple[np.ndarray, bytes | mmap.mmap] | None:
        """A column's spans and bytes, mapped (for the names of a whole lookup at once)."""
        if not self.manifest["columns"].get(stem):
            return None
        spans = _map(self.folder / f"{stem}.spans", np.dtype("<u8")).reshape(-1, 2)
        path = self.folder / f"{stem}.bin"
        if path.stat().st_size == 0:
            return spans, b""
        with open(path, "rb") as fh:
            return spans, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)

    def _read(self, stem: str, wanted: list[int]) -> list[bytes | None] | None:
        """Values of a column for some entries, read with ``pread``, not through a map.

        A scan's parent reads the hits' records batch after batch: maps kept open keep
        every page a hit touched resident, and even a map made for one batch faults in
        whole folios of the page cache (on this machine's kernel, ~0.85 MiB of
        ``names.bin`` and ~0.25 MiB of ``names.spans`` per random hit), so its memory
        would grow with the hits."""
        if not self.manifest["columns"].get(stem):
            return None
        out: list[bytes | None] = []
        with open(self.folder / f"{stem}.bin", "rb", buffering=0) as blob:
            for raw in _rows(self.folder / f"{stem}.spans", _SPAN.size, wanted):
                start, stop = _SPAN.unpack(raw)
                out.append(os.pread(blob.fileno(), stop - start, start) if stop > start else None)
        return out

    def _read_sizes(self, wanted: list[int]) -> list[int | None] | None:
        if not self.manifest["columns"].get("sizes"):
            return None
        sizes = (int.from_bytes(raw, "little", signed=True)
                 for raw in _rows(self.folder / "sizes.i64", 8, wanted))  # fmt: skip
        return [size if size >= 0 else None for size in sizes]

    def entry(self, entry: int) -> EntryRecord:
        """Name, size and metadata of one entry."""
        names, sizes, metas = self.columns([entry])
        return EntryRecord(entry, names[0], sizes[0], json.loads(metas[0]) if metas[0] else {})

    def name_windows(self, entries: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Names of many entries as :func:`windows` rows ``(matrix, mask)``; ``None`` when
        the set has no names or the longest name makes the matrix too large."""
        names = self._column("names")
        if names is None:
            return None
        spans, blob = names
        picked = spans[entries].astype(np.int64)
        lengths = np.maximum(picked[:, 1] - picked[:, 0], 0)
        source = np.frombuffer(blob, dtype=np.uint8) if len(blob) else np.zeros(0, np.uint8)
        return windows(source, picked[:, 0], lengths)

    def columns(
        self, entries: list[int]
    ) -> tuple[list[bytes | None], list[int | None], list[bytes | None]]:
        """Names, sizes and raw JSON metadata of many entries, gathered in one step each."""
        wanted = [int(e) for e in entries]
        none: list[None] = [None] * len(wanted)
        names = self._read("names", wanted) or none
        metas = self._read("meta", wanted) or none
        sizes = self._read_sizes(wanted) or list(none)
        return list(names), sizes, list(metas)


_SPAN = struct.Struct("<QQ")  # a spans row: start, stop


def _rows(path: Path, width: int, wanted: list[int]) -> Iterator[bytes]:
    """Rows ``wanted`` of a file of ``width``-byte rows, each read with ``pread``."""
    with open(path, "rb", buffering=0) as fh:
        for row in wanted:
            raw = os.pread(fh.fileno(), width, width * row)
            if len(raw) != width:
                raise ValueError(f"{path} has no row {row}")
            yield raw


MAX_WINDOW_CELLS = 1 << 25  # 32 MiB: beyond this, windows() declines (callers go per item)


def windows(
    source: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """The byte ranges as rows of one ``(n, longest)`` matrix plus a mask of the valid cells.

    ``matrix[mask]`` is the ranges concatenated: one row copy per range, no
    per-byte index arrays (no large temporaries, far fewer page faults).
    ``None`` when the matrix would exceed ``MAX_WINDOW_CELLS``.
    """
    n = len(starts)
    width = int(lengths.max()) if n else 0
    if n * width > MAX_WINDOW_CELLS:
        return None
    if width == 0:
        return np.zeros((n, 0), np.uint8), np.zeros((n, 0), bool)
    if len(source) < width:  # a tiny source: pad a copy so every window fits
        padded = np.zeros(width, np.uint8)
        padded[: len(source)] = source
        source = padded
    begin = np.minimum(starts, len(source) - width)  # a window never runs off the end
    shift = (starts - begin)[:, None]
    view = np.lib.stride_tricks.as_strided(
        source, shape=(len(source) - width + 1, width), strides=(source.strides[0],) * 2,
        writeable=False,
    )  # fmt: skip
    columns = np.arange(width)
    mask = (columns >= shift) & (columns < shift + lengths[:, None])
    return view[begin], mask


@dataclass(frozen=True)
class LineHits:
    """Hits of a bulk lookup: one item per (line, entry) found, in line order."""

    lines: np.ndarray  # line number (0-based) of the query
    starts: np.ndarray  # where the query's hex starts in the data
    widths: np.ndarray  # its length in characters (32, 40, 64)
    algorithms: np.ndarray  # index into DIGESTS
    entries: np.ndarray  # entry number in the set
    given: int  # non-blank lines
    invalid: int  # non-blank lines that are not an MD5, SHA-1 or SHA-256 in hex


if TYPE_CHECKING:
    _PerWidth = dict[int, tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]]


def lookup_lines(index: HashSetIndex, data: bytes) -> LineHits:
    """Look up every line of ``data`` (one hex digest per line; case and blanks ignored).

    A file of equal-width hex lines is decoded in one ``bytes.fromhex`` call;
    otherwise lines are split and decoded vectorised (``examkit.hexlines``), and
    only lines with surrounding blanks or odd lengths are looked at one by one.
    """
    per_width, given = _uniform_lines(data) or _split_lines(data)
    parts: list[tuple[np.ndarray, ...]] = []
    valid = 0
    for number, (algorithm, size) in enumerate(DIGESTS.items()):
        rows, lines, line_starts = (np.concatenate(x) for x in per_width[2 * size])
        valid += len(lines)
        if not len(lines):
            continue
        queries = np.ascontiguousarray(rows.astype(np.uint8)).view(f"S{size}").ravel()
        q_pos, entries = index.lookup(algorithm, queries)
        parts.append((lines[q_pos], line_starts[q_pos], np.full(len(q_pos), 2 * size),
                      np.full(len(q_pos), number), entries))  # fmt: skip
    if not parts:
        empty = np.zeros(0, np.int64)
        return LineHits(empty, empty, empty, empty, empty, given, given - valid)
    lines, line_starts, widths, algorithms, entries = (
        np.concatenate([p[i] for p in parts]) for i in range(5)
    )
    order = np.lexsort((entries, lines))
    return LineHits(
        lines[order], line_starts[order], widths[order], algorithms[order], entries[order],
        given, given - valid,
    )  # fmt: skip


def _uniform_lines(data: bytes) -> tuple[_PerWidth, int] | None:
    """The usual bulk file, decoded at C speed: every line exactly 32, 40 or 64 hex
    characters then ``\\n``. ``None`` for anything else (the general path decides)."""
    width = data.find(b"\n")
    if width not in (32, 40, 64) or len(data) % (width + 1):
        return None
    count = len(data) // (width + 1)
    if data[width :: width + 1] != b"\n" * count:
        return None
    try:
        raw = bytes.fromhex(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    if len(raw) != count * width // 2:  # fromhex skips blanks: a line held one
        return None
    lines = np.arange(count)
    per_width: _PerWidth = {w: ([np.zeros((0, w // 2), np.uint8)], [lines[:0]], [lines[:0]])
                            for w in (32, 40, 64)}  # fmt: skip
    per_width[width] = ([np.frombuffer(raw, np.uint8).reshape(count, width // 2)], [lines],
                        [lines * (width + 1)])  # fmt: skip
    return per_width, count


def _split_lines(data: bytes) -> tuple[_PerWidth, int]:
    """Digests of every line, grouped by hex width: ``({width: (rows, lines, starts)}, given)``."""
    from .hexlines import decode_hex, line_bounds

    buf = np.frombuffer(data, dtype=np.uint8)
    starts, ends = line_bounds(buf)
    length = ends - starts
    plain = np.zeros(len(starts), bool)
    per_width: _PerWidth = {}
    for width in (32, 40, 64):
        picked = np.flatnonzero(length == width)
        values, ok = decode_hex(data, buf, starts[picked], width)
        plain[picked[ok]] = True
        per_width[width] = ([values[ok]], [picked[ok]], [starts[picked[ok]]])
    blank = length == 0
    given = int(len(starts) - np.count_nonzero(blank))
    for line in np.flatnonzero(~plain & ~blank).tolist():  # the odd ones, one by one
        raw = data[starts[line] : ends[line]]
        text = raw.strip()
        if not text:
            given -= 1
            continue
        width = len(text)
        try:
            digest = bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            continue
        if width not in per_width or 2 * len(digest) != width:  # fromhex skips inner blanks
            continue
        start = int(starts[line]) + len(raw) - len(raw.lstrip())
        per_width[width][0].append(np.frombuffer(digest, np.uint8)[None])
        per_width[width][1].append(np.array([line]))
        per_width[width][2].append(np.array([start]))
    return per_width, given


def lookup_hex(index: HashSetIndex, values: list[str]) -> tuple[list[tuple[str, str, int]], int]:
    """Hex digests (any case) found in the set: ``(hex, algorithm, entry)`` per hit, in the
    order given, and how many values were not an MD5, SHA-1 or SHA-256 in hex."""
    data = "\n".join(v.replace("\n", " ") for v in values).encode("utf-8", "replace")
    hits = lookup_lines(index, data)
    names = list(DIGESTS)
    return [
        (values[line].strip().lower(), names[a], e)
        for line, a, e in zip(
            hits.lines.tolist(), hits.algorithms.tolist(), hits.entries.tolist(), strict=True
        )
    ], hits.invalid
