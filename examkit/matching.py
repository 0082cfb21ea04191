"""Matching of recorded file hashes against compiled hash sets, in bulk.

Exact: digests of a batch of files are looked up set by set and algorithm by
algorithm with one vectorised search each (``HashSetIndex.lookup``).
Near (perceptual): PDQ hashes of quality >= ``NearOptions.pdq_min_quality``
within ``pdq_threshold`` bits, and pHash within ``phash_threshold`` bits, found
with the multi-index search of ``examkit.nearmatch``; a near match records its
distance, and an entry a file already matches exactly is not matched again by
distance (exact wins). Results go to the case's ``matches`` table and the
``flagged`` / ``known_good`` marks on ``files``. Matching is idempotent: a
(file, set, algorithm, entry) pair is recorded once however often it is matched.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from . import custody
from .case import Case, dumps
from .categories import describe
from .clock import utc_now
from .hashdb import EntryRecord, HashSetIndex, digest_dtype, hex_to_raw
from .hashformat import DIGESTS, PERCEPTUAL
from .lazy import LazyModule
from .models import HashSetInfo, MatchCounts
from .native import helper

if TYPE_CHECKING:
    import numpy as np
else:
    from .hashdb import np  # the one numpy stand-in: prepare() loads what lookups use

PAGE = 50_000
# entry metadata with a column of its own in ``matches``
_COLUMNS = ("category", "series", "victim_identified", "offender_identified", "is_distributed",
            "media_id")  # fmt: skip


@dataclass(frozen=True)
class CaseSet:
    """A library set as used in one case: its row id there and its open index."""

    hashset_id: int
    info: HashSetInfo
    index: HashSetIndex


class FileDigests(NamedTuple):
    """What matching needs of one hashed stream."""

    file_id: int
    size: int | None
    md5: str | None
    sha1: str | None
    sha256: str | None
    pdq: str | None = None
    pdq_quality: int | None = None
    phash: str | None = None


_POSITION = {"md5": 2, "sha1": 3, "sha256": 4, "pdq": 5, "phash": 7}
NEAR_PER_FILE = 16  # near matches kept per file, set and algorithm: the nearest


@dataclass(frozen=True)
class NearOptions:
    """Thresholds of perceptual matching (Hamming distances, inclusive)."""

    pdq_threshold: int = 31  # of 256 bits: PDQ's own recommended match threshold
    pdq_min_quality: int = 50  # PDQ hashes of flatter images are not matched
    phash_threshold: int = 8  # of 64 bits
    enabled: bool = True

    def threshold(self, algorithm: str) -> int:
        return self.pdq_threshold if algorithm == "pdq" else self.phash_threshold


def use_sets(
    conn: sqlite3.Connection, infos: Sequence[HashSetInfo], run_id: int, actor: str | None
) -> list[CaseSet]:
    """Record the sets in the case (once each) with a custody entry per use; open them."""
    used = []
    for info in infos:
        row = conn.execute(
            "SELECT hashset_id FROM hashsets WHERE name = ? AND source_sha256 = ?",
            (info.name, info.source_sha256),
        ).fetchone()
        if row is None:
            version = info.provenance.get("nsrl_version") or info.provenance.get("vics_version")
            cur = conn.execute(
                "INSERT INTO hashsets (name, kind, format, description, source_name, source_sha256,"
                " source_size, entries, algorithms, version, provenance, category_profile,"
                " imported_utc, imported_by, first_used_utc, first_used_run_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    info.name, info.kind, info.format, info.description, info.source_name,
                    info.source_sha256, info.source_size, info.entries, dumps(info.algorithms),
                    None if version is None else str(version), dumps(info.provenance),
                    dumps(info.category_profile), info.imported_utc, info.imported_by,
                    utc_now(), run_id,
                ),
            )  # fmt: skip
            hashset_id = int(cur.lastrowid or 0)
        else:
            hashset_id = int(row[0])
        custody.append(
            conn,
            "hashset_used",
            actor,
            {
                "run_id": run_id,
                "hashset_id": hashset_id,
                "name": info.name,
                "kind": info.kind,
                "format": info.format,
                "source_name": info.source_name,
                "source_sha256": info.source_sha256,
                "entries": info.entries,
                "algorithms": dict(info.algorithms),
                "provenance": dict(info.provenance),
                "imported_utc": info.imported_utc,
            },
        )
        used.append(CaseSet(hashset_id, info, HashSetIndex(Path(info.path))))
    return used


ENTRIES_REMEMBERED = 10_000  # entries whose records a matcher keeps (~1 KB each, NSRL metadata)


class Matcher:
    """Looks up batches of file digests in every set and builds ``matches`` rows."""

    def __init__(self, sets: Sequence[CaseSet], near: NearOptions | None = None) -> None:
        self.sets = list(sets)
        self.near = near or NearOptions()
        self._entries: dict[tuple[int, int], EntryRecord] = {}

    def __bool__(self) -> bool:
        return bool(self.sets)

    def prepare(self, perceptual: bool = True) -> None:
        """Import what lookups need (numpy) on a thread of its own, when they will need it:
        for a scan's parent while its listing starts (its first results then wait for
        none). Exact matching needs it only without the compiled helper (``HashSetIndex.
        find``); near matching needs it when the scan computes perceptual hashes
        (``perceptual``) and a set holds some."""
        if not self.sets or not isinstance(np, LazyModule):
            return
        listed = {a for s in self.sets for a in s.index.manifest["algorithms"]}
        near = perceptual and self.near.enabled and bool(listed & set(PERCEPTUAL))
        if near or helper() is None:
            np.load_in_background()

    def rows(self, files: Sequence[FileDigests], run_id: int | None) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        if not files or not self.sets:
            return out
        now = utc_now()
        for algorithm in DIGESTS:
            sets = [s for s in self.sets if algorithm in s.index.manifest["algorithms"]]
            if not sets:  # no set lists this digest: nothing to look up
                continue
            position = _POSITION[algorithm]
            values = [str(f[position] or "") for f in files]
            raw, valid = hex_to_raw(values, algorithm)
            if not valid:
                continue
            for case_set in sets:
                pairs = case_set.index.find(algorithm, raw)
                if pairs is None:  # no compiled helper: numpy's search, in the same order
                    queries = np.frombuffer(raw, dtype=digest_dtype(algorithm))
                    q_pos, found = case_set.index.lookup(algorithm, queries)
                    pairs = sorted(zip(q_pos.tolist(), found.tolist(), strict=True))
                entries = [entry for _, entry in pairs]
                self._gather(case_set, entries)
                for q, entry in pairs:
                    f = files[valid[q]]
                    out.append(self._row(case_set, algorithm, f, entry, run_id, now))
        if self.near.enabled:
            out.extend(self._near_rows(files, run_id, now, {(r[0], r[1], r[5]) for r in out}))
        return out

    def _near_rows(
        self, files: Sequence[FileDigests], run_id: int | None, now: str,
        exact: set[tuple[int, int, int]],
    ) -> list[tuple[Any, ...]]:  # fmt: skip
        """Perceptual matches; ``exact`` holds the (file, set, entry) already matched exactly."""
        out: list[tuple[Any, ...]] = []
        for algorithm, width in PERCEPTUAL.items():
            picked = [
                f for f in files
                if f[_POSITION[algorithm]] and len(str(f[_POSITION[algorithm]])) == 2 * width
                and (algorithm != "pdq" or (f.pdq_quality or 0) >= self.near.pdq_min_quality)
            ]  # fmt: skip
            if not picked:
                continue
            raw = bytes.fromhex("".join(str(f[_POSITION[algorithm]]) for f in picked))
            queries = np.frombuffer(raw, np.uint8).reshape(-1, width)
            threshold = self.near.threshold(algorithm)
            for case_set in self.sets:
                rows, entries, distances = case_set.index.near(algorithm, queries, threshold)
                kept: dict[int, int] = {}
                for q, entry, distance in zip(rows.tolist(), entries.tolist(),
                                              distances.tolist(), strict=True):  # fmt: skip
                    f = picked[q]
                    if (f.file_id, case_set.hashset_id, entry) in exact:
                        continue
                    if kept.get(q, 0) >= NEAR_PER_FILE:  # nearest first: the rest are farther
                        continue
                    kept[q] = kept.get(q, 0) + 1
                    out.append(self._row(case_set, algorithm, f, entry, run_id, now, distance))
        return out

    def _gather(self, case_set: CaseSet, entries: Sequence[int]) -> None:
        """Read the records of a batch's hits in one step per column (a set's columns are
        memory maps: one read of one entry costs ~40 microseconds, most of it numpy's)."""
        missing = sorted({e for e in entries if (case_set.hashset_id, e) not in self._entries})
        if not missing:
            return
        if len(self._entries) + len(missing) > ENTRIES_REMEMBERED:
            self._entries.clear()
        names, sizes, metas = case_set.index.columns(missing)
        for entry, name, size, meta in zip(missing, names, sizes, metas, strict=True):
            record = EntryRecord(entry, name, size, json.loads(meta) if meta else {})
            self._entries[(case_set.hashset_id, entry)] = record

    def _entry(self, case_set: CaseSet, entry: int) -> EntryRecord:
        key = (case_set.hashset_id, entry)
        if key not in self._entries:
            if len(self._entries) > ENTRIES_REMEMBERED:
                self._entries.clear()
            self._entries[key] = case_set.index.entry(entry)
        return self._entries[key]

    def _row(
        self,
        case_set: CaseSet,
        algorithm: str,
        f: FileDigests,
        entry: int,
        run_id: int | None,
        now: str,
        distance: int = 0,
    ) -> tuple[Any, ...]:
        record = self._entry(case_set, entry)
        meta = dict(record.meta)
        category = meta.get("category")
        label, alert = describe(dict(case_set.info.category_profile), category)
        known_bad = case_set.info.kind == "known_bad"
        size_matches = None
        if record.size is not None and f[1] is not None:
            size_matches = int(record.size == f[1])
        rest = {k: v for k, v in meta.items() if k not in _COLUMNS}
        name = record.name.decode("utf-8", "backslashreplace") if record.name else None
        return (
            f[0], case_set.hashset_id, case_set.info.kind, algorithm, f[_POSITION[algorithm]],
            entry, int(known_bad and alert), category, label if known_bad else None,
            meta.get("series"), _flag(meta.get("victim_identified")),
            _flag(meta.get("offender_identified")), _flag(meta.get("is_distributed")),
            None if meta.get("media_id") is None else str(meta["media_id"]), name, record.size,
            size_matches, json.dumps(rest, sort_keys=True, ensure_ascii=False) if rest else None,
            run_id, now, distance,
        )  # fmt: skip


def _flag(value: Any) -> int | None:
    return None if value is None else int(bool(value))


_INSERT = (
    "INSERT OR IGNORE INTO matches (file_id, hashset_id, kind, algorithm, digest, entry, alert,"
    " category, category_label, series, victim_identified, offender_identified, is_distributed,"
    " media_id, entry_name, entry_size, size_matches, metadata, run_id, matched_utc, distance)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def write_matches(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> MatchCounts:
    """Insert match rows and mark their files; inside the caller's transaction."""
    if not rows:
        return MatchCounts()
    before = conn.total_changes
    conn.executemany(_INSERT, rows)
    inserted = conn.total_changes - before
    flagged = sorted({r[0] for r in rows if r[6]})
    good = sorted({r[0] for r in rows if r[2] == "known_good"})
    return MatchCounts(
        matches=inserted,
        flagged=_mark(conn, "flagged", flagged),
        known_good=_mark(conn, "known_good", good),
    )


def _mark(conn: sqlite3.Connection, column: str, file_ids: list[int]) -> int:
    changed = 0
    for start in range(0, len(file_ids), 500):
        chunk = file_ids[start : start + 500]
        cur = conn.execute(
            f"UPDATE files SET {column} = 1 WHERE {column} = 0 AND file_id IN"
            f" ({', '.join('?' * len(chunk))})",
            chunk,
        )
        changed += cur.rowcount
    return changed


def hashed_files(
    case: Case, evidence_id: str | None = None, before_run: int | None = None
) -> Iterator[list[FileDigests]]:
    """Pages of hashed streams (optionally of one evidence item, hashed before a run)."""
    last = 0
    where = "file_id > ? AND status = 'ok' AND md5 IS NOT NULL"
    params: list[Any] = []
    if evidence_id:
        where += " AND evidence_id = ?"
        params.append(evidence_id)
    if before_run is not None:
        where += " AND (run_id IS NULL OR run_id < ?)"
        params.append(before_run)
    while True:
        page = case.conn.execute(
            f"SELECT file_id, bytes_read, md5, sha1, sha256, pdq, pdq_quality, phash FROM files"
            f" WHERE {where} ORDER BY file_id LIMIT {PAGE}",
            [last, *params],
        ).fetchall()
        if not page:
            return
        yield [FileDigests(*r) for r in page]
        last = page[-1][0]


def match_case(
    case: Case,
    matcher: Matcher,
    run_id: int,
    evidence_id: str | None = None,
    before_run: int | None = None,
) -> MatchCounts:
    """Match every hashed stream already in the case (no evidence is read)."""
    total = MatchCounts()
    for page in hashed_files(case, evidence_id, before_run):
        rows = matcher.rows(page, run_id)
        with case.transaction() as conn:
            got = write_matches(conn, rows)
        total = MatchCounts(
            total.files_checked + len(page),
            total.matches + got.matches,
            total.flagged + got.flagged,
            total.known_good + got.known_good,
        )
    return total


def record_reveal(case: Case, actor: str | None, command: str, file_ids: Sequence[int]) -> None:
    """Log that names of flagged files were shown on request: who, when, which files."""
    ids = sorted(set(file_ids))
    case.log(
        "names_revealed",
        actor,
        {"command": command, "files": len(ids), "file_ids": ids[:10_000],
         "file_ids_truncated": len(ids) > 10_000},
    )  # fmt: skip
