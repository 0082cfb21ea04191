"""Planning a scan: list volumes, file systems and every entry into the case (metadata only)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from .case import Case
from .evidence import MediaStream
from .isolation import heartbeat
from .models import FileEntry
from .plugins import Registry
from .walk import find_volumes, open_filesystem

BATCH = 5000
_FILE_COLUMNS = (
    "evidence_id", "volume_id", "filesystem_id", "seq", "path", "name", "path_bytes",
    "name_bytes", "stream", "attr_type", "attr_id", "inode", "meta_type", "size", "allocated",
    "state", "mtime", "atime", "ctime", "crtime", "status", "error",
)  # fmt: skip
_INSERT_FILE = (
    f"INSERT INTO files ({', '.join(_FILE_COLUMNS)}) VALUES ({', '.join('?' * len(_FILE_COLUMNS))})"
)


class ListingProgress(Protocol):
    def listed(self, entries: int) -> None: ...


def _file_row(evidence_id: str, volume_id: int, fs_id: int, e: FileEntry) -> tuple[object, ...]:
    return (
        evidence_id, volume_id, fs_id, e.seq, e.path, e.name, e.path_bytes, e.name_bytes,
        e.stream, e.attr_type, e.attr_id, e.inode, e.meta_type, e.size, int(e.allocated),
        e.state, e.mtime, e.atime, e.ctime, e.crtime, e.status, e.error,
    )  # fmt: skip


def _insert_entries(
    case: Case,
    evidence_id: str,
    volume_id: int,
    fs_id: int,
    entries: Iterable[FileEntry],
    progress: ListingProgress | None,
) -> tuple[int, str | None]:
    """Insert entries in batches; returns (count, error that stopped the listing)."""
    count = 0
    batch: list[tuple[object, ...]] = []
    error = None
    iterator = iter(entries)
    while True:
        try:
            entry = next(iterator)
        except StopIteration:
            break
        except Exception as exc:  # corrupt metadata: keep what was listed, record why it stopped
            error = f"listing stopped after {count} entries: {type(exc).__name__}: {exc}"
            break
        batch.append(_file_row(evidence_id, volume_id, fs_id, entry))
        count += 1
        heartbeat()  # a long walk that progresses is not a hang
        if len(batch) >= BATCH:
            with case.transaction() as conn:
                conn.executemany(_INSERT_FILE, batch)
            if progress:
                progress.listed(len(batch))
            batch = []
    if batch:
        with case.transaction() as conn:
            conn.executemany(_INSERT_FILE, batch)
        if progress:
            progress.listed(len(batch))
    return count, error


def plan_evidence(
    case: Case,
    registry: Registry,
    evidence_id: str,
    media: MediaStream,
    progress: ListingProgress | None = None,
) -> None:
    """Record every volume, file system and entry of one evidence item as pending work."""
    with case.transaction() as conn:
        # leftovers of a listing that was interrupted are listed again from scratch
        for table in ("files", "filesystems", "volumes"):
            conn.execute(f"DELETE FROM {table} WHERE evidence_id = ?", (evidence_id,))
        conn.execute(
            "UPDATE evidence SET scan_status = 'planning' WHERE evidence_id = ?", (evidence_id,)
        )
    volumes = find_volumes(media, registry.volume_systems)
    for volume in volumes:
        with case.transaction() as conn:
            volume_id = conn.execute(
                "INSERT INTO volumes (evidence_id, idx, kind, system, start_offset, length,"
                " description, slot, walked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    evidence_id,
                    volume.index,
                    volume.kind,
                    volume.system,
                    volume.start,
                    volume.length,
                    volume.description,
                    volume.slot,
                    int(volume.walkable),
                ),
            ).lastrowid
        assert volume_id is not None
        if not volume.walkable:
            continue
        attempt = open_filesystem(media, volume, registry.filesystems)
        if attempt.handle is None:
            with case.transaction() as conn:
                conn.execute(
                    "INSERT INTO filesystems (evidence_id, volume_id, offset, status, error)"
                    " VALUES (?, ?, ?, 'error', ?)",
                    (evidence_id, volume_id, volume.start, attempt.error),
                )
            continue
        handle = attempt.handle
        info = handle.info
        with case.transaction() as conn:
            fs_id = conn.execute(
                "INSERT INTO filesystems (evidence_id, volume_id, walker, fs_type, offset,"
                " block_size, block_count, label, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'ok')",
                (
                    evidence_id,
                    volume_id,
                    info.walker,
                    info.fs_type,
                    info.offset,
                    info.block_size,
                    info.block_count,
                    info.label,
                ),
            ).lastrowid
        assert fs_id is not None
        count, error = _insert_entries(
            case, evidence_id, volume_id, fs_id, handle.entries(), progress
        )
        handle.close()
        with case.transaction() as conn:
            conn.execute(
                "UPDATE filesystems SET entries = ?, status = ?, error = ? WHERE filesystem_id = ?",
                (count, "error" if error else "ok", error, fs_id),
            )
    with case.transaction() as conn:
        conn.execute(
            "UPDATE evidence SET planned = 1, scan_status = 'hashing' WHERE evidence_id = ?",
            (evidence_id,),
        )
