"""QEMU copy-on-write disks (QCOW version 1, 2 and 3) through libqcow.

Encrypted images (legacy AES or LUKS) and overlays on a backing file are refused: the
first cannot be read without the key, the second holds only the changes to its backing disk.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyqcow

from examkit import __version__
from examkit.errors import EvidenceError
from examkit.evidence import Container, MediaStream
from examkit.hookspecs import Register, hookimpl
from examkit.models import MediaInfo
from examkit_plugins._libyal import LibyalMedia, libyal_cause, refuse_empty

MAGIC = b"QFI\xfb"
ENCRYPTION = {0: None, 1: "AES", 2: "LUKS"}


def parse_header(head: bytes) -> dict[str, int]:
    """The QCOW header fields examkit needs: version, cluster_bits, crypt_method."""
    if len(head) < 48 or not head.startswith(MAGIC):
        return {}
    (version,) = struct.unpack_from(">I", head, 4)
    if version == 1:  # ... size u64 @24, cluster_bits u8 @32, l2_bits u8, pad u16, crypt u32 @36
        cluster_bits = head[32]
        (crypt,) = struct.unpack_from(">I", head, 36)
    else:  # ... cluster_bits u32 @20, size u64 @24, crypt_method u32 @32
        cluster_bits, _, crypt = struct.unpack_from(">IQI", head, 20)
    return {"version": version, "cluster_bits": cluster_bits, "crypt_method": crypt}


def _beside(child: Path, name: str) -> Path:
    """Where a backing file named in an overlay is: as written, else next to the overlay."""
    written = Path(name)
    return written if written.is_absolute() else child.parent / name


class QcowMedia(LibyalMedia):
    library, label = "libqcow", "QCOW"

    def __init__(self, handle: Any, path: Path, header: dict[str, int]) -> None:
        meta = {"format": "QCOW", "format_version": str(header.get("version", ""))}
        if header.get("cluster_bits"):
            meta["cluster_size"] = str(1 << header["cluster_bits"])
        super().__init__(
            handle,
            MediaInfo(
                container="qcow",
                paths=(str(path),),
                size=int(handle.get_media_size()),
                stored_hashes={},  # QCOW carries no acquisition hash
                metadata={k: v for k, v in meta.items() if v},
            ),
        )


def _check(path: Path, handle: Any) -> None:
    """Refuse overlays: their data is only complete with the backing file."""
    backing = handle.backing_filename
    if not backing:
        return
    if _beside(path, str(backing)).exists():
        raise EvidenceError(
            f"{path} is a QCOW overlay on backing file {_beside(path, str(backing))}: disk"
            " chains are not read",
            "merge the chain into one image (qemu-img convert -O raw CHILD merged.raw), record"
            " its hash and scan that; or scan the backing disk on its own",
        )
    raise EvidenceError(
        f"{path} is a QCOW overlay whose backing file {str(backing)!r} is missing",
        "an overlay holds only the changes to its backing file: find it, merge the chain"
        " (qemu-img convert -O raw) and scan the merged image",
    )


class QcowContainer(Container):
    name = "qcow"
    version = f"{__version__} (libqcow {pyqcow.get_version()})"
    description = "QEMU copy-on-write disk (QCOW version 1, 2, 3; not encrypted, no backing file)"
    priority = 90

    def detect(self, path: Path, head: bytes) -> bool:
        return head.startswith(MAGIC)

    def open(self, paths: Sequence[Path]) -> MediaStream:
        path = paths[0]
        with open(path, "rb") as fh:
            header = parse_header(fh.read(512))
        method = header.get("crypt_method", 0)
        if method:
            raise EvidenceError(
                f"{path} is an encrypted QCOW ({ENCRYPTION.get(method) or f'method {method}'})",
                "decrypt it with the key (qemu-img convert --object secret,… -O raw) and scan"
                " the decrypted image",
            )
        handle = pyqcow.file()
        try:
            handle.open(str(path))
        except OSError as exc:
            raise EvidenceError(
                f"libqcow cannot open {path}: {libyal_cause(exc)}",
                "the QCOW may be corrupt or truncated; check it with qemu-img check",
            ) from exc
        try:
            _check(path, handle)
            media = QcowMedia(handle, path, header)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                handle.close()
            if isinstance(exc, OSError):
                raise EvidenceError(
                    f"libqcow cannot read {path}: {libyal_cause(exc)}",
                    "the QCOW may be corrupt; check it with qemu-img check",
                ) from exc
            raise
        return refuse_empty(media, path, "QCOW", "qemu-img check")


@hookimpl
def register_containers(register: Register) -> None:
    register(QcowContainer())
