"""Expert Witness Format (E01, including segmented .E01/.E02… sets) through libewf."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyewf

from examkit import __version__
from examkit.errors import EvidenceError
from examkit.evidence import Container, MediaStream
from examkit.hookspecs import Register, hookimpl
from examkit.models import MediaInfo

EVF1 = b"EVF\x09\x0d\x0a\xff\x00"
EVF2 = b"EVF2\x0d\x0a\x81\x00"
# Decompressed chunks kept for small reads, per open image (a worker, the listing). The
# Sleuth Kit reads a small file's data and its metadata record 64 KiB at a time; in E01
# each such read decompresses the chunks it spans (32 KiB each, typically: ~135 us each
# here), and libewf keeps only the last few. Files are read in listing order, whose data
# and records lie all over the image, so the same chunks were decompressed again and
# again: a scan of 25,000 small files took 26.7 s from E01 against 3.3 s from the same
# image raw (fiwalk: 12.8 s from the E01). With the last 8 MiB of chunks kept: 14.4 s.
KEPT_BYTES = 8 << 20
DIRECT_CHUNKS = 8  # a read spanning this many chunks or more (a large file, the whole
# media's verification) goes to libewf as it is, and nothing is kept from it
# libewf keeps what it learns of the image's chunks until the handle is closed: ~5.5 MiB
# for each GiB read (a 20 GiB E01 read whole: 12 -> 129 MiB in one process). The handle
# is opened again after it has given this many bytes, the chunks kept here staying (that
# read: a peak of 156 -> 77 MiB, as fast; see libyal/libewf-legacy issue 17).
REOPEN_BYTES = 2 << 30
LVF = (b"LVF\x09\x0d\x0a\xff\x00", b"LEF2\x0d\x0a\x81\x00")


class EwfMedia(MediaStream):
    def __init__(self, paths: Sequence[Path]) -> None:
        self._paths = [str(p) for p in paths]
        self._handle = self._open()
        self._read = 0  # bytes libewf gave since its handle was opened
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
        self._chunk = max(512, int(self._handle.get_chunk_size() or 32768))
        self._most = max(1, KEPT_BYTES // self._chunk)  # chunks kept at most
        self._kept: OrderedDict[int, bytes] = OrderedDict()  # index -> chunk, oldest first

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self.size or length <= 0:
            return b""
        length = min(length, self.size - offset)
        size = self._chunk
        first, last = offset // size, (offset + length - 1) // size
        if last - first + 1 >= DIRECT_CHUNKS:
            return self._libewf(length, offset)
        start = offset - first * size
        if first == last:
            return self._cached(first)[start : start + length]
        parts = []
        for index in range(first, last + 1):
            parts.append(chunk := self._cached(index))
            if len(chunk) < min(size, self.size - index * size):
                break  # libewf gave less: what follows it is not given either
        return b"".join(parts)[start : start + length]

    def _libewf(self, length: int, offset: int) -> bytes:
        if self._read >= REOPEN_BYTES:  # what libewf holds of the chunks is let go
            self._handle.close()
            self._handle, self._read = self._open(), 0
        self._read += length
        return bytes(self._handle.read_buffer_at_offset(length, offset))

    def _open(self) -> Any:
        handle = pyewf.handle()
        handle.open(self._paths, "r")
        return handle

    def _cached(self, index: int) -> bytes:
        """Chunk ``index``, decompressed (the least recently used one dropped for it)."""
        kept = self._kept.pop(index, None)
        if kept is None:
            at = index * self._chunk
            want = min(self._chunk, self.size - at)
            kept = self._libewf(want, at)
            if len(kept) != want:  # given as it is, never kept
                return kept
            while len(self._kept) >= self._most:
                self._kept.popitem(last=False)
        self._kept[index] = kept
        return kept

    def close(self) -> None:
        self._kept.clear()
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
