"""Recording archive members (``examkit.archives``) as ``files`` rows, in the writer.

A member's row: the archive's evidence and volume, no file system
(``filesystem_id`` NULL: it is not in one), ``parent_file_id`` = the archive,
``seq`` = its place in the archive, ``path`` = the archive's path, ``!/`` and
the path inside (``/Users/a/pics.zip!/folder/x.jpg``), the archive's
allocation state, and its hashes, type and perceptual hashes like any stream.
The archive's own row gets ``archive_format``, ``archive_status``,
``archive_detail`` and ``archive_members``.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from .archives import ArchiveResult, MemberResult
from .case import dumps
from .hashing import COLUMN_DIGESTS
from .matching import FileDigests
from .perceptual import near_values

_INSERT = (
    "INSERT INTO files (evidence_id, volume_id, filesystem_id, seq, path, name, meta_type, size,"
    " allocated, state, mtime, mime, extension_mismatch, md5, sha1, sha256, digests, bytes_read,"
    " status, error, parent_file_id, run_id, pdq, pdq_quality, phash, dhash, image_status,"
    " image_detail, image_width, image_height, image_hashes)"
    " VALUES (?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
    " ?, ?, ?, ?)"
)
_MARK = (
    "UPDATE files SET archive_format = ?, archive_status = ?, archive_detail = ?,"
    " archive_members = ? WHERE file_id = ?"
)


def image_columns(image: Any) -> tuple[Any, ...]:
    """``pdq, pdq_quality, phash, dhash, status, detail, width, height, other hashes``."""
    values = dict(image.hashes) if image else {}
    pdq, quality = values.pop("pdq", (None, None))
    phash, dhash = values.pop("phash", (None,))[0], values.pop("dhash", (None,))[0]
    others = dumps({k: v[0] for k, v in values.items()}) if values else None
    if image is None:
        return (None,) * 9
    return (pdq, quality, phash, dhash, image.status, image.detail, image.width, image.height,
            others)  # fmt: skip


def record_members(
    conn: sqlite3.Connection, archive_file_id: int, archive: ArchiveResult, run_id: int
) -> list[FileDigests]:
    """Insert the members of ``archive`` (recursively) under its row; returns what matching
    needs of every member that was read completely."""
    parent = conn.execute(
        "SELECT evidence_id, volume_id, path, allocated, state FROM files WHERE file_id = ?",
        (archive_file_id,),
    ).fetchone()
    conn.execute(_MARK, (archive.format, archive.status, archive.detail, len(archive.members),
                         archive_file_id))  # fmt: skip
    hashed: list[FileDigests] = []
    for seq, member in enumerate(archive.members, 1):
        file_id = _insert(conn, parent, seq, member, archive_file_id, run_id)
        if member.status == "ok" and member.digests:
            pdq, quality, phash = near_values(member.image)
            hashed.append(FileDigests(file_id, member.bytes_read, member.digests.get("md5"),
                                      member.digests.get("sha1"), member.digests.get("sha256"),
                                      pdq, quality, phash))  # fmt: skip
        if member.archive is not None:
            hashed += record_members(conn, file_id, member.archive, run_id)
    return hashed


def _insert(
    conn: sqlite3.Connection,
    parent: tuple[Any, ...],
    seq: int,
    member: MemberResult,
    parent_id: int,
    run_id: int,
) -> int:
    evidence_id, volume_id, parent_path, allocated, state = parent
    extra = {k: v for k, v in member.digests.items() if k not in COLUMN_DIGESTS}
    meta_type = "dir" if member.is_dir else "file"
    cur = conn.execute(_INSERT, (
        evidence_id, volume_id, seq, f"{parent_path}!/{member.path}",
        member.path.rsplit("/", 1)[-1], meta_type, member.size, allocated, state, member.mtime,
        member.mime, member.extension_mismatch, member.digests.get("md5"),
        member.digests.get("sha1"), member.digests.get("sha256"),
        dumps(extra) if extra else None, member.bytes_read, member.status, member.error,
        parent_id, run_id, *image_columns(member.image),
    ))  # fmt: skip
    return int(cur.lastrowid or 0)
