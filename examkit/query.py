"""Read-side queries on a case: overviews and file listings for renderers and scripts."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .case import Case
from .custody import verify_chain

FILE_COLUMNS = (
    "file_id", "evidence_id", "volume_id", "filesystem_id", "path", "name", "stream", "inode",
    "meta_type", "size", "allocated", "state", "mtime", "atime", "ctime", "crtime", "mime",
    "extension_mismatch", "md5", "sha1", "sha256", "bytes_read", "status", "error", "flagged",
    "known_good", "same_content_as",
)  # fmt: skip


@dataclass(frozen=True)
class FileFilter:
    evidence_id: str | None = None
    states: Sequence[str] = ()
    statuses: Sequence[str] = ()
    mime: str | None = None  # prefix, e.g. "image/"
    path_like: str | None = None  # SQL LIKE pattern
    limit: int | None = None
    include_known: bool = False  # known-good files are left out unless asked for
    all_copies: bool = False  # shadow-copy files with a listed file's path and content too


def list_files(case: Case, flt: FileFilter) -> Iterator[dict[str, Any]]:
    """File rows matching the filter, in file_id order, streamed."""
    where, params = [], []
    if not flt.include_known:
        where.append("known_good = 0")
    if not flt.all_copies:
        where.append("same_content_as IS NULL")
    if flt.evidence_id:
        where.append("evidence_id = ?")
        params.append(flt.evidence_id)
    if flt.states:
        where.append(f"state IN ({', '.join('?' * len(flt.states))})")
        params.extend(flt.states)
    if flt.statuses:
        where.append(f"status IN ({', '.join('?' * len(flt.statuses))})")
        params.extend(flt.statuses)
    if flt.mime:
        where.append("mime LIKE ? ESCAPE '\\'")
        params.append(flt.mime.replace("%", "\\%").replace("_", "\\_") + "%")
    if flt.path_like:
        where.append("path LIKE ?")
        params.append(flt.path_like)
    sql = f"SELECT {', '.join(FILE_COLUMNS)} FROM files"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY file_id"
    if flt.limit:
        sql += f" LIMIT {int(flt.limit)}"
    yield from case.db.query(sql, params)


def overview(case: Case) -> dict[str, Any]:
    """Everything ``examkit info`` shows, as plain data."""
    db = case.db
    info = case.info()
    evidence = []
    for row in db.query("SELECT * FROM evidence ORDER BY added_utc, evidence_id"):
        row = dict(row)
        eid = row["evidence_id"]
        row["source_paths"] = json.loads(row["source_paths"])
        row["container_metadata"] = json.loads(row["container_metadata"] or "{}")
        row["volumes"] = list(
            db.query(
                "SELECT v.idx, v.kind, v.system, v.start_offset, v.length, v.description,"
                " p.idx AS parent, v.layer, v.layer_type, v.layer_detail, v.identifiers,"
                " v.locked, v.unlocked_with, v.layer_error FROM volumes v"
                " LEFT JOIN volumes p ON p.volume_id = v.parent_volume_id"
                " WHERE v.evidence_id = ? ORDER BY v.idx",
                [eid],
            )
        )
        row["filesystems"] = list(
            db.query(
                "SELECT f.filesystem_id, f.volume_id, v.idx AS volume, f.walker, f.fs_type,"
                " f.offset, f.status, f.error, f.entries, f.details FROM filesystems f"
                " JOIN volumes v ON v.volume_id = f.volume_id"
                " WHERE f.evidence_id = ? ORDER BY f.filesystem_id",
                [eid],
            )
        )
        for fs in row["filesystems"]:
            fs["details"] = json.loads(fs["details"]) if fs["details"] else None
        row["by_state"] = grouped_counts(case, "state", eid)
        row["by_status"] = grouped_counts(case, "status", eid)
        row["by_mime"] = grouped_counts(case, "mime", eid, limit=12)
        row["extension_mismatches"], row["flagged"], row["known_good"] = case.conn.execute(
            "SELECT coalesce(sum(extension_mismatch = 1), 0), coalesce(sum(flagged), 0),"
            " coalesce(sum(known_good), 0) FROM files WHERE evidence_id = ?",
            (eid,),
        ).fetchone()
        evidence.append(row)
    runs = []
    for row in db.query("SELECT * FROM runs ORDER BY run_id"):
        row = dict(row)
        for key in ("command_line", "evidence_ids", "options", "tool_versions",
                    "plugin_versions", "counts"):  # fmt: skip
            row[key] = json.loads(row[key]) if row[key] else None
        runs.append(row)
    hashsets = [
        dict(r)
        for r in db.query(
            "SELECT hashset_id, name, kind, format, version, entries, source_sha256,"
            " first_used_utc FROM hashsets ORDER BY hashset_id"
        )
    ]
    ok, chain = verify_chain(case.conn)
    (entries,) = case.conn.execute("SELECT count(*) FROM custody_log").fetchone()
    return {
        "case": info,
        "evidence": evidence,
        "runs": runs,
        "hashsets": hashsets,
        "custody_log": {"entries": entries, "chain_ok": ok, "detail": chain},
    }


def grouped_counts(
    case: Case, column: str, evidence_id: str, limit: int | None = None
) -> dict[str, int]:
    """Rows of one evidence item counted by ``column`` (NULL shown as ``(none)``), largest first."""
    sql = (
        f"SELECT coalesce({column}, '(none)'), count(*) AS n FROM files WHERE evidence_id = ?"
        f" GROUP BY {column} ORDER BY n DESC, 1"
    )
    if limit:
        sql += f" LIMIT {int(limit)}"
    return {str(k): int(n) for k, n in case.conn.execute(sql, (evidence_id,)).fetchall()}


HIT_COLUMNS = (
    "evidence_id", "file_id", "path", "name", "size", "state", "md5", "sha1", "sha256",
    "hashset", "kind", "algorithms", "category", "category_label", "series",
    "victim_identified", "offender_identified", "is_distributed", "media_id", "size_matches",
    "alert", "distance", "snapshot_copies",
)  # fmt: skip


def list_hits(
    case: Case, evidence_id: str | None = None, all_categories: bool = False,
    all_copies: bool = False,
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Known-bad matches, one row per file, set and entry (flagged ones unless ``all_categories``).

    A shadow-copy file with the same path and content as one listed already
    (``files.same_content_as``) is folded into it: ``snapshot_copies`` says in how
    many more snapshots that content was seen. ``all_copies`` lists them as rows too.
    Rows hold file names: renderers must pass them through the display gate.
    """
    where = ["m.kind = 'known_bad'"]
    if not all_copies:
        where.append("f.same_content_as IS NULL")
    params: list[Any] = []
    if not all_categories:
        where.append("m.alert = 1")
    if evidence_id:
        where.append("f.evidence_id = ?")
        params.append(evidence_id)
    sql = (
        "SELECT f.evidence_id, f.file_id, f.path, f.name, f.size, f.state, f.md5, f.sha1,"
        " f.sha256, h.name AS hashset, m.kind, group_concat(DISTINCT m.algorithm) AS algorithms,"
        " m.category, m.category_label, m.series, m.victim_identified, m.offender_identified,"
        " m.is_distributed, m.media_id, m.size_matches, m.alert,"
        " min(m.distance) AS distance,"  # 0 for exact matches
        " coalesce(c.copies, 0) AS snapshot_copies"
        " FROM matches m JOIN files f ON f.file_id = m.file_id"
        " JOIN hashsets h ON h.hashset_id = m.hashset_id"
        " LEFT JOIN (SELECT same_content_as AS original, count(*) AS copies FROM files"
        " WHERE same_content_as IS NOT NULL GROUP BY same_content_as) c"
        " ON c.original = f.file_id"
        f" WHERE {' AND '.join(where)} GROUP BY m.file_id, m.hashset_id, m.entry"
        " ORDER BY f.evidence_id, f.file_id, h.name, m.entry"
    )
    yield from case.db.query(sql, params)
