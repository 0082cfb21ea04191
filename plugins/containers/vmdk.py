"""VMware virtual disks (VMDK: monolithic, split/extent sets, flat, stream-optimized) via libvmdk.

A set is opened from its descriptor: the text ``# Disk DescriptorFile`` of a split or flat
disk, or the one embedded in a monolithic sparse file (``KDMV``). The extent files are opened
here, named as the descriptor names them but looked up next to it, and handed to libvmdk as
file objects: libvmdk itself would resolve the name written in the descriptor, which for a
renamed monolithic file is a different (or no) file.
"""

from __future__ import annotations

import contextlib
import io
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import pyvmdk

from examkit import __version__
from examkit.errors import EvidenceError
from examkit.evidence import Container, MediaStream
from examkit.hookspecs import Register, hookimpl
from examkit.models import MediaInfo
from examkit_plugins._libyal import LibyalMedia, libyal_cause, refuse_empty

SPARSE = b"KDMV"  # VMware 4+ sparse extent (monolithicSparse, twoGbMaxExtentSparse, stream)
COWD = b"COWD"  # ESX 2.x sparse extent
DESCRIPTOR = b"# disk descriptorfile"
NO_PARENT = 0xFFFFFFFF
MAX_DESCRIPTOR = 1 << 20  # a descriptor file is text of a few hundred bytes

_DISK_TYPES = {
    getattr(pyvmdk.disk_types, n): n.lower() for n in dir(pyvmdk.disk_types) if n.isupper()
}
_EXTENT_TYPES = {
    getattr(pyvmdk.extent_types, n): n.lower() for n in dir(pyvmdk.extent_types) if n.isupper()
}


def _head(path: Path, size: int = 512) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(size)
    except OSError:
        return b""


def is_descriptor(head: bytes) -> bool:
    """Whether ``head`` starts a VMDK descriptor text file."""
    return head.lstrip()[: len(DESCRIPTOR)].lower() == DESCRIPTOR


def has_embedded_descriptor(path: Path) -> bool:
    """Whether a ``KDMV`` sparse extent carries its own descriptor (a monolithic disk).

    The extents of a split set have none, though qemu-img still fills in the header's
    descriptor offset: what is there decides.
    """
    head = _head(path)
    if not head.startswith(SPARSE) or len(head) < 44:
        return False
    offset, size = struct.unpack_from("<QQ", head, 28)  # in sectors
    if not offset or not size:
        return False
    try:
        with open(path, "rb") as fh:
            fh.seek(offset * 512)
            return is_descriptor(fh.read(64))
    except (OSError, OverflowError, ValueError):
        return False


def _filename(extent: Any) -> str | None:
    try:
        name = extent.filename  # raises for extents without a file (ZERO)
    except OSError:
        return None
    return str(name) if name else None


def _beside(descriptor: Path, name: str) -> Path:
    """Where an extent (or parent) named in a descriptor is: next to the descriptor.

    The name may hold the path of the machine that wrote it (``C:\\VMs\\…``,
    ``/vmfs/volumes/…``); like libvmdk, only its last component is used.
    """
    return descriptor.parent / re.split(r"[\\/]", name)[-1]


def _open_descriptor(path: Path) -> Any:
    handle = pyvmdk.handle()
    handle.open(str(path))
    return handle


def extent_files(descriptor: Path) -> list[Path | None]:
    """The file of each extent a descriptor file names, in order (None: no file, ZERO)."""
    handle = _open_descriptor(descriptor)
    try:
        names = [_filename(e) for e in handle.extent_descriptors]
    finally:
        with contextlib.suppress(OSError):
            handle.close()
    return [_beside(descriptor, n) if n else None for n in names]


def find_descriptor(extent: Path) -> Path | None:
    """The descriptor file next to ``extent`` that names it, if there is one."""
    try:
        siblings = sorted(extent.parent.iterdir())
    except OSError:
        return None
    for candidate in siblings:
        if candidate == extent or candidate.suffix.lower() != ".vmdk":
            continue
        with contextlib.suppress(OSError, ValueError):
            if candidate.stat().st_size > MAX_DESCRIPTOR or not is_descriptor(_head(candidate)):
                continue
            if extent in extent_files(candidate):
                return candidate
    return None


class VmdkMedia(LibyalMedia):
    library, label = "libvmdk", "VMDK"

    def __init__(self, handle: Any, files: list[IO[bytes]], paths: Sequence[Path]) -> None:
        self._files = files
        extents = list(handle.extent_descriptors)
        meta = {
            "format": "VMDK",
            "disk_type": _DISK_TYPES.get(handle.disk_type, str(handle.disk_type)),
            "content_id": f"{int(handle.content_identifier or 0):08x}",
            "extents": str(len(extents)),
            "extent_types": ",".join(
                sorted({_EXTENT_TYPES.get(e.type, str(e.type)) for e in extents})
            ),
        }
        super().__init__(
            handle,
            MediaInfo(
                container="vmdk",
                paths=tuple(map(str, paths)),
                size=int(handle.get_media_size()),
                stored_hashes={},  # VMDK carries no acquisition hash
                metadata=meta,
            ),
        )

    def close(self) -> None:
        super().close()
        for fh in self._files:  # the extent files examkit opened for libvmdk
            with contextlib.suppress(OSError):
                fh.close()
        self._files = []


def _refuse_delta(path: Path, handle: Any) -> None:
    """Refuse a delta (snapshot) disk: its data is only complete with its parent."""
    parent_cid = handle.parent_content_identifier
    parent = handle.parent_filename
    if not parent and (parent_cid is None or int(parent_cid) == NO_PARENT):
        return
    name = str(parent or "?")
    if parent and _beside(path, name).exists():
        raise EvidenceError(
            f"{path} is a VMDK delta (snapshot) disk over {_beside(path, name)}: snapshot"
            " chains are not read",
            "merge the chain into one image (qemu-img convert -O raw CHILD merged.raw), record"
            " its hash and scan that; or scan the parent disk on its own",
        )
    raise EvidenceError(
        f"{path} is a VMDK delta (snapshot) disk whose parent {name!r} is missing",
        "a delta holds only the changes since a snapshot: find the parent disk, merge the chain"
        " (qemu-img convert -O raw) and scan the merged image",
    )


def _open_files(descriptor: Path, head: bytes, handle: Any) -> list[IO[bytes]]:
    """The extent data files of an opened descriptor, as file objects in extent order."""
    if head.startswith((SPARSE, COWD)):  # monolithic: the file is its own (only) extent
        if handle.number_of_extents != 1:
            raise EvidenceError(
                f"{descriptor} names {handle.number_of_extents} extents in its own descriptor",
                "a monolithic VMDK holds one extent; the file may be damaged",
            )
        return [open(descriptor, "rb")]
    files: list[IO[bytes]] = []
    with contextlib.ExitStack() as opened:  # all or none: closed again if one is missing
        for extent in extent_files(descriptor):
            if extent is None:
                files.append(io.BytesIO())  # ZERO extent: no file (libvmdk reads zeros)
            elif not extent.is_file():
                raise EvidenceError(
                    f"{descriptor} names extent file {extent.name}, which is missing",
                    "copy every extent file of the set next to its descriptor and scan again",
                )
            else:
                files.append(opened.enter_context(open(extent, "rb")))
        opened.pop_all()
    return files


class VmdkContainer(Container):
    name = "vmdk"
    version = f"{__version__} (libvmdk {pyvmdk.get_version()})"
    description = (
        "VMware virtual disk (VMDK: monolithic or split sparse, flat, stream-optimized;"
        " opened from the descriptor)"
    )
    priority = 90

    def detect(self, path: Path, head: bytes) -> bool:
        return head.startswith((SPARSE, COWD)) or is_descriptor(head)

    def segments(self, path: Path) -> list[Path]:
        head = _head(path)
        if head.startswith(SPARSE) and not has_embedded_descriptor(path):
            descriptor = find_descriptor(path)  # one extent of a set: the set is its descriptor's
            if descriptor is None:
                return [path]
            path, head = descriptor, _head(descriptor)
        if not is_descriptor(head):
            return [path]
        try:
            extents = extent_files(path)
        except (OSError, ValueError):
            return [path]
        return list(dict.fromkeys([path, *(e for e in extents if e is not None)]))

    def open(self, paths: Sequence[Path]) -> MediaStream:
        descriptor = paths[0]
        head = _head(descriptor)
        if head.startswith(SPARSE) and not has_embedded_descriptor(descriptor):
            raise EvidenceError(
                f"{descriptor} is one extent of a split VMDK, not a whole disk",
                "give the set's descriptor file (the small .vmdk text file naming its extents)",
            )
        try:
            handle = _open_descriptor(descriptor)
        except OSError as exc:
            raise EvidenceError(
                f"libvmdk cannot open {descriptor}: {libyal_cause(exc)}",
                "the VMDK may be corrupt or truncated; check it with vmdkinfo or qemu-img check",
            ) from exc
        files: list[IO[bytes]] = []
        try:
            _refuse_delta(descriptor, handle)
            files = _open_files(descriptor, head, handle)
            handle.open_extent_data_files_as_file_objects(files)
            media = VmdkMedia(handle, files, paths)
        except BaseException as exc:
            for fh in files:
                fh.close()
            with contextlib.suppress(OSError):
                handle.close()
            if isinstance(exc, OSError):
                raise EvidenceError(
                    f"libvmdk cannot open the extents of {descriptor}: {libyal_cause(exc)}",
                    "an extent file may be missing, truncated or corrupt; check it with vmdkinfo",
                ) from exc
            raise
        return refuse_empty(media, descriptor, "VMDK", "vmdkinfo")


@hookimpl
def register_containers(register: Register) -> None:
    register(VmdkContainer())
