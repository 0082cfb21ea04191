"""Expert Witness Format (E01, including segmented .E01/.E02… sets) through libewf."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import pyewf

from examkit import __version__
from examkit.errors import EvidenceError
from examkit.evidence import Container, MediaStream
from examkit.hookspecs import Register, hookimpl
from examkit.models import MediaInfo

EVF1 = b"EVF\x09\x0d\x0a\xff\x00"
EVF2 = b"EVF2\x0d\x0a\x81\x00"
LVF = (b"LVF\x09\x0d\x0a\xff\x00", b"LEF2\x0d\x0a\x81\x00")


class EwfMedia(MediaStream):
    def __init__(self, paths: Sequence[Path]) -> None:
        self._handle = pyewf.handle()
        self._handle.open([str(p) for p in paths], "r")
        stored = {
            k.lower().replace("-", ""): str(v).lower()
            for k, v in (self._handle.get_hash_values() or {}).items()
            if v
        }
        meta = {k: str(v) for k, v in (self._handle.get_header_values() or {}).items() if v}
        super().__init__(
            MediaInfo(
                container="ewf",
                paths=tuple(map(str, paths)),
                size=int(self._handle.get_media_size()),
                sector_size=int(self._handle.get_bytes_per_sector() or 512),
                stored_hashes=stored,
                metadata=meta,
            )
        )

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self.size or length <= 0:
            return b""
        length = min(length, self.size - offset)
        return bytes(self._handle.read_buffer_at_offset(length, offset))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._handle.close()


class EwfContainer(Container):
    name = "ewf"
    version = f"{__version__} (libewf {pyewf.get_version()})"
    description = "EnCase / Expert Witness image (E01, Ex01; segmented sets)"
    priority = 100

    def detect(self, path: Path, head: bytes) -> bool:
        if head.startswith(LVF):
            raise EvidenceError(
                f"{path} is a logical evidence file (L01/Lx01), not a disk image",
                "examkit scans disk images; export the files and image them instead",
            )
        return head.startswith((EVF1, EVF2))

    def segments(self, path: Path) -> list[Path]:
        try:
            return [Path(p) for p in pyewf.glob(str(path))]
        except (OSError, ValueError):
            return [path]

    def open(self, paths: Sequence[Path]) -> MediaStream:
        try:
            media = EwfMedia(paths)
        except OSError as exc:
            raise EvidenceError(
                f"libewf cannot open {paths[0]}: {str(exc).splitlines()[0]}",
                "the E01 set may be corrupt or missing a segment (.E02, .E03 …)",
            ) from exc
        if media.size == 0:  # an EWF header and nothing libewf can read: not an empty disk
            media.close()
            raise EvidenceError(
                f"{paths[0]} holds no media data: the E01 is corrupt or incomplete",
                "check it with ewfverify; re-acquire or restore it from the original copy",
            )
        return media


@hookimpl
def register_containers(register: Register) -> None:
    register(EwfContainer())
