"""APFS through libfsapfs (pyfsapfs): pytsk3 has no pool API, so TSK cannot open APFS.

Design: examkit records one file system per volume (partition), and an APFS
container is one partition holding several APFS volumes. This walker opens the
container as one file system (``fs_type`` ``apfs``, ``label`` the volume names
joined by ``,``) and lists every volume in it below a directory row named after
the volume: ``/apfs_test/a_directory/a_file``. Names that are empty, repeated or
contain ``/`` are made unique (``volume3``, ``name_2``). Each volume's root is
a ``dir`` row (``inode`` = its root identifier) so an empty or locked volume is
still recorded.

Streams: ``inode`` is the APFS file-system object identifier (as ``fls -P apfs``
prints it), ``attr_type`` the attribute type as TSK numbers it for HFS+/APFS
(4352 data fork, 4353 resource fork, 4354 extended attribute), ``attr_id`` the
volume's index in the container (for an extended attribute, plus 65,536 times
its position among the entry's attributes, counted from 1). The HFS+ rules of
the TSK walker apply:

- a resource fork (the ``com.apple.ResourceFork`` extended attribute) is a row
  of its own with ``stream`` = ``rsrc`` and path ``…:RSRC`` (the path TSK gives
  the same fork on HFS+, so rows of the two file systems compare equal);
- every other extended attribute is a row of its own with ``stream`` = its name
  and path ``…:NAME``, hashed and matched like any stream (``istat -P apfs``
  lists them as ``ExATTR``; the same rule holds for HFS+ through TSK).

A file with no data stream (such as ``a_resourcefork``) is a row of size 0.

An encrypted volume (FileVault on APFS) is unlocked with ``--unlock UUID|*=password:…``
or ``recovery-key:…`` (``UUID`` the APFS volume's, as ``examkit info``'s custody
entries show it); the listing records a ``volume_unlocked`` or ``volume_locked``
custody entry for it. One still locked is recorded as its ``dir`` row
with status ``error`` and nothing below it; when every volume is locked the
file system cannot be opened and examkit records it as an ``error`` file system.
libfsapfs lists only allocated entries: every row is ``allocated``.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from functools import cached_property
from typing import Any

import pyfsapfs

from examkit.display import decode_name
from examkit.evidence import MediaStream
from examkit.hookspecs import Register, hookimpl
from examkit.layers import RegionFile, Secret, Unlock, secrets_for
from examkit.models import ALLOCATED, ERROR, NO_CONTENT, PENDING, FileEntry, FileSystemInfo
from examkit.walk import EncryptedPart, FileSystemHandle, FileSystemWalker, NotRecognised
from examkit_plugins._libyal import libyal_cause
from examkit_plugins.filesystems.apfs_meta import ApfsMeta, ApfsMetaError
from examkit_plugins.filesystems.tsk import HFS_DATA, HFS_EXT_ATTR, HFS_RSRC
from examkit_plugins.filesystems.xfs import entry_times, read_chunks, walk_tree

NX_MAGIC = b"NXSB"  # container superblock signature, at byte 32 of block 0
RESOURCE_FORK = "com.apple.ResourceFork"
XATTR_STEP = 1 << 16  # attr_id of an extended attribute: volume index + STEP * (position + 1)


def _volume_dirs(names: list[str]) -> list[str]:
    """A unique, '/'-free directory name for each volume."""
    seen: set[str] = set()
    out = []
    for index, raw in enumerate(names):
        base = raw.replace("/", "_") or f"volume{index}"
        name, n = base, 1
        while name in seen:
            n += 1
            name = f"{base}_{n}"
        seen.add(name)
        out.append(name)
    return out


def _details(file: RegionFile) -> dict[str, Any]:
    """Each volume's superblock location, UUID and snapshots (``filesystems.details``)."""
    try:
        volumes = ApfsMeta(file.read_at).volumes()
    except (ApfsMetaError, OSError, struct.error, ValueError) as exc:
        return {"snapshots_error": f"cannot list the snapshots: {exc}"}
    return {"volumes": [asdict(v) for v in volumes]}


def _unlock(volume: Any, secrets: list[Secret]) -> tuple[str | None, str | None]:
    """Try each secret on a locked volume: ``(kind that opened it, None)`` or
    ``(None, why it stays locked)``. Secrets are never part of what is returned."""
    if not secrets:
        return None, "encrypted APFS volume is locked (no key): not listed"
    for secret in secrets:
        if secret.kind not in ("password", "recovery-key"):
            continue  # APFS volumes take a password or a recovery key, not a key file
        try:
            if secret.kind == "password":
                volume.set_password(secret.text)
            else:
                volume.set_recovery_password(secret.text)
            if volume.unlock() and not volume.is_locked():
                return secret.kind, None
        except OSError:
            continue
    tried = ", ".join(sorted({s.kind for s in secrets}))
    return None, f"encrypted APFS volume is locked: the {tried} given did not open it"


class ApfsFileSystem(FileSystemHandle):
    def __init__(
        self, container: Any, file: RegionFile, offset: int, head: bytes,
        unlocks: Sequence[Unlock] = (),
    ) -> None:  # fmt: skip
        self._container = container
        self._file = file
        self._volumes: list[Any] = []
        self._locked_why: dict[int, str] = {}
        names: list[str] = []
        parts = []
        for index in range(int(container.get_number_of_volumes())):
            volume = container.get_volume(index)
            self._volumes.append(volume)
            names.append(volume.get_name() or "")
            if volume.is_locked():
                ids = {"uuid": str(volume.get_identifier() or ""), "name": names[-1]}
                used, why = _unlock(volume, secrets_for(unlocks, None, ids))
                if why:
                    self._locked_why[index] = why
                parts.append(EncryptedPart("APFS volume", ids, used, why))
        self.encrypted = tuple(parts)
        self._dirs = _volume_dirs(names)
        self._names, self._offset, self._head = names, offset, head

    @cached_property
    def info(self) -> FileSystemInfo:  # type: ignore[override]  # computed once, then fixed
        """Read when the listing asks (workers that only read streams never do): the
        snapshot metadata is parsed here."""
        block_size, block_count = struct.unpack("<IQ", self._head[36:48])
        return FileSystemInfo(
            walker="apfs",
            fs_type="apfs",
            offset=self._offset,
            block_size=block_size,
            block_count=block_count,
            label=",".join(self._names) or None,
            details=_details(self._file),
        )

    def entries(self) -> Iterator[FileEntry]:
        seq = 0
        for index, volume in enumerate(self._volumes):
            for row in self._volume_entries(index, volume, seq):
                yield row
                seq += 1

    def _volume_entries(self, index: int, volume: Any, seq: int) -> Iterator[FileEntry]:
        top = "/" + self._dirs[index]
        if volume.is_locked():
            why = self._locked_why.get(index, "encrypted APFS volume is locked: not listed")
            yield FileEntry(
                seq=seq, path=top, name=self._dirs[index], stream=None, inode=None,
                attr_type=None, attr_id=index, meta_type="dir", size=0, state=ALLOCATED,
                status=ERROR, error=why,
            )  # fmt: skip
            return
        root = volume.get_root_directory()
        root_id = int(root.get_identifier())
        top_raw = top.encode("utf-8", "surrogateescape")
        for row in self._rows(root, top_raw[1:], top_raw, root_id, "dir", index, seq, None):
            yield row
            seq += 1
        rows = walk_tree(root, root_id, top_raw, lambda entry: int(entry.get_identifier()))
        for entry, raw, path_raw, ident, kind, note in rows:
            for row in self._rows(entry, raw, path_raw, ident, kind, index, seq, note):
                yield row
                seq += 1

    @staticmethod
    def _rows(
        entry: Any, raw: bytes, path_raw: bytes, ident: int, kind: str, index: int, seq: int,
        note: str | None,
    ) -> Iterator[FileEntry]:  # fmt: skip
        name, name_bytes = decode_name(raw)
        path, path_bytes = decode_name(path_raw)
        common: dict[str, Any] = {
            "name": name, "name_bytes": name_bytes, "inode": ident, "meta_type": kind,
            "state": ALLOCATED, **entry_times(entry),
        }  # fmt: skip
        try:
            xattrs = [
                entry.get_extended_attribute(i) for i in range(entry.number_of_extended_attributes)
            ]
        except OSError as exc:
            xattrs = []
            cause = f"cannot read extended attributes: {libyal_cause(exc)}"
            note = f"{note}; {cause}" if note else cause
        content = kind == "file"
        yield FileEntry(
            seq=seq, path=path, path_bytes=path_bytes, stream=None, attr_id=index,
            attr_type=HFS_DATA if content else None, size=int(entry.get_size() or 0),
            status=PENDING if content else NO_CONTENT, error=note, **common,
        )  # fmt: skip
        for position, xattr in enumerate(xattrs, start=1):
            xname = xattr.get_name() or ""
            fork = xname == RESOURCE_FORK
            suffix = "RSRC" if fork else xname
            full = path_raw + b":" + suffix.encode("utf-8", "surrogateescape")
            yield FileEntry(
                seq=seq + position, path=decode_name(full)[0], path_bytes=decode_name(full)[1],
                stream="rsrc" if fork else xname, attr_type=HFS_RSRC if fork else HFS_EXT_ATTR,
                attr_id=index if fork else index + XATTR_STEP * position,
                size=int(xattr.get_size() or 0), status=PENDING, error=None, **common,
            )  # fmt: skip

    def read(
        self, inode: int, attr_type: int | None, attr_id: int | None, size: int
    ) -> Iterator[bytes]:
        volume_index, position = divmod(attr_id or 0, XATTR_STEP)[::-1]
        entry = self._volumes[volume_index].get_file_entry_by_identifier(inode)
        if attr_type == HFS_RSRC:
            yield from read_chunks(entry.get_extended_attribute_by_name(RESOURCE_FORK), size)
        elif attr_type == HFS_EXT_ATTR:
            yield from read_chunks(entry.get_extended_attribute(position - 1), size)
        else:
            yield from read_chunks(entry, size)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._container.close()


class ApfsWalker(FileSystemWalker):
    name = "apfs"
    version = f"pyfsapfs {pyfsapfs.get_version()}"
    description = "APFS containers (libfsapfs): every volume; resource forks, extended attributes"
    priority = 40  # after TSK, which is tried first

    def open(self, media: MediaStream, offset: int, length: int) -> FileSystemHandle:
        return self.open_with(media, offset, length, ())

    def open_with(
        self, media: MediaStream, offset: int, length: int, unlocks: Sequence[Unlock]
    ) -> FileSystemHandle:
        head = media.read(offset, 4096)
        if len(head) < 48 or head[32:36] != NX_MAGIC:
            raise NotRecognised("no APFS container superblock signature")
        file = RegionFile(media, offset, length)
        container = pyfsapfs.container()
        try:
            container.open_file_object(file)
        except OSError as exc:
            raise NotRecognised(
                f"libfsapfs cannot open the container: {libyal_cause(exc)}"
            ) from exc
        handle = ApfsFileSystem(container, file, offset, head, unlocks)
        volumes = handle._volumes
        if volumes and all(v.is_locked() for v in volumes):
            handle.close()
            given = " (the secrets given did not open them)" if unlocks else " (no key)"
            raise OSError(
                f"APFS container: all {len(volumes)} volume(s) encrypted and locked{given}"
            )
        return handle


@hookimpl
def register_filesystems(register: Register) -> None:
    register(ApfsWalker())
