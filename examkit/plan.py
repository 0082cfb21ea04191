"""Planning a scan: list volumes, file systems and every entry into the case (metadata only)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from . import custody
from .case import Case, dumps
from .evidence import MediaStream
from .isolation import heartbeat
from .layers import (
    MAX_DEPTH,
    LayerProbe,
    Locked,
    Step,
    Unlock,
    VolumeLayer,
    chain_text,
    secrets_for,
)
from .models import FileEntry, Volume
from .plugins import Registry
from .walk import FileSystemWalker, find_volumes, open_filesystem

BATCH = 5000
COMMIT_SECONDS = 0.2  # a batch is committed at least this often: hashing follows the listing
# Committed at once, so that idle workers start on them while the walk goes on: the
# first entries (a work unit's worth: ScanOptions.unit_files), and an entry whose stream
# is large (a unit of its own, ScanOptions.unit_bytes: the longer such a stream waits,
# the longer the scan's tail, when its digests run alone), though not more often than
# every LARGE_COMMIT_SECONDS (a walk through thousands of videos is not a commit each).
FIRST_BATCH = 256
LARGE_STREAM = 32 << 20
LARGE_COMMIT_SECONDS = 0.005
_FILE_COLUMNS = (
    "evidence_id", "volume_id", "filesystem_id", "seq", "path", "name", "path_bytes",
    "name_bytes", "stream", "attr_type", "attr_id", "inode", "meta_type", "size", "allocated",
    "state", "mtime", "atime", "ctime", "crtime", "status", "error",
)  # fmt: skip
_INSERT_FILE = (
    f"INSERT INTO files ({', '.join(_FILE_COLUMNS)}) VALUES ({', '.join('?' * len(_FILE_COLUMNS))})"
)


@dataclass(frozen=True)
class ListingOptions:
    """What the examiner chose for the listing: secrets, snapshots, file-system back ends."""

    unlocks: tuple[Unlock, ...] = ()
    shadow_copies: bool = False
    fs_backends: tuple[tuple[str, str], ...] = ()  # (volume selector or "*", walker name)
    actor: str | None = None


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
    since = time.monotonic()
    large = False  # the batch holds a large stream
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
        large = large or (entry.size or 0) >= LARGE_STREAM
        waited = time.monotonic() - since
        if (
            len(batch) >= BATCH
            or count == FIRST_BATCH
            or waited >= (LARGE_COMMIT_SECONDS if large else COMMIT_SECONDS)
        ):
            with case.transaction() as conn:
                conn.executemany(_INSERT_FILE, batch)
            if progress:
                progress.listed(len(batch))
            batch, since, large = [], time.monotonic(), False
    if batch:
        with case.transaction() as conn:
            conn.executemany(_INSERT_FILE, batch)
        if progress:
            progress.listed(len(batch))
    return count, error


def walkers_for(
    walkers: list[FileSystemWalker], volume: Volume, backends: tuple[tuple[str, str], ...]
) -> list[FileSystemWalker]:
    """The walkers to try on a volume: only the forced one when ``--fs-backend`` names one."""
    forced = [name for sel, name in backends if sel in ("*", str(volume.index))]
    if not forced:
        return walkers
    return [w for w in walkers if w.name == forced[0]]


def _layers_for(reg: Registry, options: ListingOptions) -> list[VolumeLayer]:
    return [
        layer
        for layer in reg.volume_layers
        if layer.opt_in is None or getattr(options, layer.opt_in, False)
    ]


@dataclass
class _Listing:
    case: Case
    reg: Registry
    evidence_id: str
    options: ListingOptions
    progress: ListingProgress | None
    next_index: int = 0

    def insert_volume(
        self, volume: Volume, parent: int | None = None, chain: tuple[Step, ...] = ()
    ) -> int:
        with self.case.transaction() as conn:
            volume_id = conn.execute(
                "INSERT INTO volumes (evidence_id, idx, kind, system, start_offset, length,"
                " description, slot, walked, parent_volume_id, chain)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self.evidence_id, volume.index, volume.kind, volume.system, volume.start,
                 volume.length, volume.description, volume.slot, int(volume.walkable), parent,
                 chain_text(chain)),
            ).lastrowid  # fmt: skip
        assert volume_id is not None
        self.next_index = max(self.next_index, volume.index + 1)
        return volume_id

    def explore(
        self,
        stream: MediaStream,
        volume: Volume,
        volume_id: int,
        chain: tuple[Step, ...] = (),
    ) -> None:
        """Layers first (each of their streams explored in turn), then a file system.

        Snapshot layers are not applied to a snapshot: a shadow copy still holds the
        snapshot catalog as it was, and opening it again would list older stores twice.
        """
        layers = _layers_for(self.reg, self.options) if len(chain) < MAX_DEPTH else []
        if volume.kind == "snapshot":
            layers = [layer for layer in layers if not layer.additive]
        for layer in layers:
            probe = layer.probe(stream, volume.start, volume.length)
            if probe is None:
                continue
            if layer.additive:  # the live volume first: its rows come before the snapshots'
                self.walk(stream, volume, volume_id)
            self.open_layer(stream, volume, volume_id, chain, layer, probe)
            return
        self.walk(stream, volume, volume_id)

    def open_layer(
        self,
        stream: MediaStream,
        volume: Volume,
        volume_id: int,
        chain: tuple[Step, ...],
        layer: VolumeLayer,
        probe: LayerProbe,
    ) -> None:
        secrets = secrets_for(self.options.unlocks, volume.index, probe.identifiers)
        locked: int | None = None
        used: str | None = None
        error: str | None = None
        outputs = []
        try:
            outputs = layer.open(stream, volume.start, volume.length, secrets)
        except Locked as exc:
            locked, error = 1, str(exc)
        except Exception as exc:  # a damaged header costs this volume, not the scan
            error = f"{type(exc).__name__}: {exc}"
            locked = 1 if layer.encrypted else None
        else:
            if layer.encrypted:
                locked = 0
                used = next((o.unlocked_with for o in outputs if o.unlocked_with), "unknown")
        with self.case.transaction() as conn:
            conn.execute(
                "UPDATE volumes SET layer = ?, layer_type = ?, layer_detail = ?, identifiers = ?,"
                " locked = ?, unlocked_with = ?, layer_error = ?, walked = ? WHERE volume_id = ?",
                (layer.name, probe.type, probe.description,
                 json.dumps(probe.identifiers, sort_keys=True) if probe.identifiers else None,
                 locked, used, error, int(layer.additive), volume_id),
            )  # fmt: skip
            if layer.encrypted:
                details = {
                    "evidence_id": self.evidence_id, "volume": volume.index,
                    "layer": layer.name, "type": probe.type, "identifiers": probe.identifiers,
                }  # fmt: skip
                if locked == 0:
                    custody.append(conn, "volume_unlocked", self.options.actor,
                                   {**details, "secret_kind": used})  # fmt: skip
                else:
                    custody.append(conn, "volume_locked", self.options.actor,
                                   {**details, "reason": error,
                                    "secrets_tried": [s.kind for s in secrets]})  # fmt: skip
        for out in outputs:
            child = Volume(self.next_index, out.kind, 0, out.stream.size,
                           out.description, None, layer.name)  # fmt: skip
            step = (layer.name, volume.start, volume.length, out.member)
            child_chain = (*chain, step)
            child_id = self.insert_volume(child, volume_id, child_chain)
            try:
                self.explore(out.stream, child, child_id, child_chain)
            finally:
                out.stream.close()

    def walk(self, stream: MediaStream, volume: Volume, volume_id: int) -> None:
        walkers = walkers_for(self.reg.filesystems, volume, self.options.fs_backends)
        attempt = open_filesystem(stream, volume, walkers, self.options.unlocks)
        if attempt.handle is None:
            with self.case.transaction() as conn:
                conn.execute(
                    "INSERT INTO filesystems (evidence_id, volume_id, offset, status, error)"
                    " VALUES (?, ?, ?, 'error', ?)",
                    (self.evidence_id, volume_id, volume.start, attempt.error),
                )
            return
        handle = attempt.handle
        info = handle.info
        with self.case.transaction() as conn:
            fs_id = conn.execute(
                "INSERT INTO filesystems (evidence_id, volume_id, walker, fs_type, offset,"
                " block_size, block_count, label, details, status)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'ok')",
                (self.evidence_id, volume_id, info.walker, info.fs_type, info.offset,
                 info.block_size, info.block_count, info.label,
                 dumps(info.details) if info.details else None),
            ).lastrowid  # fmt: skip
            for part in handle.encrypted:  # as for an encrypted volume layer
                details = {"evidence_id": self.evidence_id, "volume": volume.index,
                           "filesystem_id": fs_id, "type": part.type,
                           "identifiers": dict(part.identifiers)}  # fmt: skip
                if part.unlocked_with:
                    custody.append(conn, "volume_unlocked", self.options.actor,
                                   {**details, "secret_kind": part.unlocked_with})  # fmt: skip
                else:
                    custody.append(conn, "volume_locked", self.options.actor,
                                   {**details, "reason": part.error})  # fmt: skip
        assert fs_id is not None
        count, error = _insert_entries(
            self.case, self.evidence_id, volume_id, fs_id, handle.entries(), self.progress
        )
        handle.close()
        with self.case.transaction() as conn:
            conn.execute(
                "UPDATE filesystems SET entries = ?, status = ?, error = ? WHERE filesystem_id = ?",
                (count, "error" if error else "ok", error, fs_id),
            )


def clear_listing(case: Case, evidence_id: str) -> None:
    """Remove the leftovers of a listing that was interrupted (it is listed again from
    scratch), with what was hashed and matched of them meanwhile."""
    with case.transaction() as conn:
        conn.execute(
            "DELETE FROM matches WHERE file_id IN"
            " (SELECT file_id FROM files WHERE evidence_id = ?)",
            (evidence_id,),
        )
        for table in ("files", "filesystems", "volumes"):
            conn.execute(f"DELETE FROM {table} WHERE evidence_id = ?", (evidence_id,))
        conn.execute(
            "UPDATE evidence SET scan_status = 'planning' WHERE evidence_id = ?", (evidence_id,)
        )


def plan_evidence(
    case: Case,
    registry: Registry,
    evidence_id: str,
    media: MediaStream,
    progress: ListingProgress | None = None,
    options: ListingOptions | None = None,
) -> None:
    """Record every volume, file system and entry of one evidence item as pending work."""
    clear_listing(case, evidence_id)
    listing = _Listing(case, registry, evidence_id, options or ListingOptions(), progress)
    volumes = find_volumes(media, registry.volume_systems)
    listing.next_index = max((v.index for v in volumes), default=-1) + 1
    for volume in volumes:
        volume_id = listing.insert_volume(volume)
        if volume.walkable:
            listing.explore(media, volume, volume_id)
    with case.transaction() as conn:
        conn.execute(
            "UPDATE evidence SET planned = 1, scan_status = 'hashing' WHERE evidence_id = ?",
            (evidence_id,),
        )


def mark_snapshot_copies(case: Case, evidence_id: str) -> int:
    """Mark each snapshot file whose path, stream and SHA-256 are those of a file of the live
    volume or of an earlier snapshot of it (``files.same_content_as``: the first such file).
    Returns how many were marked; each distinct content then counts once."""
    with case.transaction() as conn:
        conn.execute(
            "UPDATE files SET same_content_as = (SELECT min(o.file_id) FROM files o"
            " JOIN filesystems ofs ON ofs.filesystem_id = o.filesystem_id"
            " JOIN volumes ov ON ov.volume_id = ofs.volume_id"
            " WHERE o.evidence_id = files.evidence_id AND o.path = files.path"
            " AND o.stream IS files.stream AND o.sha256 = files.sha256"
            " AND o.file_id < files.file_id"
            " AND sv.parent_volume_id IN (ov.volume_id, ov.parent_volume_id))"
            " FROM filesystems sfs JOIN volumes sv ON sv.volume_id = sfs.volume_id"
            " WHERE sfs.filesystem_id = files.filesystem_id AND sv.kind = 'snapshot'"
            " AND files.evidence_id = ? AND files.sha256 IS NOT NULL",
            (evidence_id,),
        )
        (marked,) = conn.execute(
            "SELECT count(*) FROM files WHERE evidence_id = ? AND same_content_as IS NOT NULL",
            (evidence_id,),
        ).fetchone()
    return int(marked)
