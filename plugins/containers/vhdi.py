"""Microsoft virtual hard disks (VHD fixed/dynamic, VHDX) through libvhdi.

A dynamic VHD starts with a copy of its footer (``conectix``), a VHDX with ``vhdxfile``; a
fixed VHD is the raw disk followed by a 512-byte footer, so it is recognised by its last
sector. This container outranks ``raw`` (which claims any file), so a fixed VHD is read as
a VHD and its media is the disk without the footer.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyvhdi

from examkit import __version__
from examkit.errors import EvidenceError
from examkit.evidence import Container, MediaStream
from examkit.hookspecs import Register, hookimpl
from examkit.models import MediaInfo
from examkit_plugins._libyal import LibyalMedia, libyal_cause, refuse_empty

VHD = b"conectix"  # the footer cookie (also at offset 0 of a dynamic or differencing VHD)
VHDX = b"vhdxfile"
FOOTER = 512

_DISK_TYPES = {
    getattr(pyvhdi.disk_types, n): n.lower() for n in dir(pyvhdi.disk_types) if n.isupper()
}


def fixed_vhd_footer(path: Path) -> bool:
    """Whether the last sector of ``path`` is a VHD footer (how a fixed VHD ends)."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size < 2 * FOOTER:
                return False
            fh.seek(size - FOOTER)
            return fh.read(len(VHD)) == VHD
    except OSError:
        return False


def _beside(child: Path, name: str) -> Path:
    """Where a parent named in a differencing disk would be: next to the child."""
    return child.parent / re.split(r"[\\/]", name)[-1]


class VhdiMedia(LibyalMedia):
    library, label = "libvhdi", "VHD"

    def __init__(self, handle: Any, path: Path, fmt: str) -> None:
        disk_type = _DISK_TYPES.get(handle.disk_type, str(handle.disk_type))
        meta = {
            "format": fmt,
            "disk_type": disk_type,
            "format_version": str(handle.format_version or ""),
            "identifier": str(handle.identifier or ""),
        }
        super().__init__(
            handle,
            MediaInfo(
                container="vhdi",
                paths=(str(path),),
                size=int(handle.get_media_size() or 0),
                sector_size=int(handle.bytes_per_sector or 512),
                stored_hashes={},  # VHD and VHDX carry no acquisition hash
                metadata={k: v for k, v in meta.items() if v},
            ),
        )


def _check(path: Path, handle: Any, fmt: str) -> None:
    """Refuse what cannot be read as a whole disk: differencing or truncated fixed disks."""
    if handle.disk_type == pyvhdi.disk_types.DIFFERENTIAL:
        name = str(handle.parent_filename or "?")
        if handle.parent_filename and _beside(path, name).exists():
            raise EvidenceError(
                f"{path} is a differencing {fmt} over {_beside(path, name)}: disk chains are"
                " not read",
                "merge the chain into one image (qemu-img convert -O raw CHILD merged.raw),"
                " record its hash and scan that; or scan the parent disk on its own",
            )
        raise EvidenceError(
            f"{path} is a differencing {fmt} whose parent {name!r} is missing",
            "a differencing disk holds only the changes to its parent: find the parent,"
            " merge the chain (qemu-img convert -O raw) and scan the merged image",
        )
    if handle.disk_type == pyvhdi.disk_types.FIXED:
        size, have = int(handle.get_media_size() or 0), path.stat().st_size
        if have < size + FOOTER:
            raise EvidenceError(
                f"{path} is a truncated fixed VHD: its footer gives {size} bytes of disk,"
                f" the file holds {have - FOOTER}",
                "restore the VHD from the original copy",
            )


class VhdiContainer(Container):
    name = "vhdi"
    version = f"{__version__} (libvhdi {pyvhdi.get_version()})"
    description = "Microsoft virtual hard disk (VHD fixed or dynamic, VHDX)"
    priority = 90  # above raw and split-raw, which would claim a fixed VHD

    def detect(self, path: Path, head: bytes) -> bool:
        return head.startswith((VHD, VHDX)) or fixed_vhd_footer(path)

    def open(self, paths: Sequence[Path]) -> MediaStream:
        path = paths[0]
        with open(path, "rb") as fh:
            fmt = "VHDX" if fh.read(len(VHDX)) == VHDX else "VHD"
        handle = pyvhdi.file()
        try:
            handle.open(str(path))
        except OSError as exc:
            raise EvidenceError(
                f"libvhdi cannot open {path}: {libyal_cause(exc)}",
                f"the {fmt} may be corrupt or truncated (a VHD needs its footer, the last"
                " 512 bytes); check it with vhdiinfo or qemu-img check",
            ) from exc
        try:
            _check(path, handle, fmt)
            media = VhdiMedia(handle, path, fmt)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                handle.close()
            if isinstance(exc, OSError):
                raise EvidenceError(
                    f"libvhdi cannot read {path}: {libyal_cause(exc)}",
                    f"the {fmt} may be corrupt; check it with vhdiinfo or qemu-img check",
                ) from exc
            raise
        return refuse_empty(media, path, fmt, "vhdiinfo")


@hookimpl
def register_containers(register: Register) -> None:
    register(VhdiContainer())
