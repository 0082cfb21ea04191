"""Expert Witness Format (E01, including segmented .E01/.E02… sets) through libewf."""

from __future__ import annotations

import contextlib
import os
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
# Decompressed chunks kept for small reads, per open image (a worker, the listing), when a
# lab sets EXAMKIT_EWF_CACHE_MB (off by default). The Sleuth Kit reads a small file's
# data and its metadata record 64 KiB at a time; in E01 each such read decompresses the
# chunks it spans (32 KiB each, typically: ~135 us each here), and libewf keeps only the
# last few. Files are read in listing order, whose data and records lie all over the
# image, so the same chunks are decompressed again and again: 25,000 small files took
# 29.2-29.9 s from E01 against 3.3 s raw (fiwalk: 12.8 s from the E01), 16.4 s with 8
# MiB kept per process (2 MiB: no faster). But each process reading small files keeps
# its own: +35 MiB in all, which took the perceptual scan of that E01 from 379-385 MiB to
# 415-418, over the memory bound; hence off unless asked for.
CACHE_ENV = "EXAMKIT_EWF_CACHE_MB"


def _kept_bytes() -> int:
    value = os.environ.get(CACHE_ENV, "").strip()
    return int(value) << 20 if value.isdigit() else 0


KEPT_BYTES = _kept_bytes()
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
        self._most = KEPT_BYTES // self._chunk  # chunks kept at most (0: none)
        # chunk index -> its slot in ``_slab``, least recently used first
        self._kept: OrderedDict[int, int] = OrderedDict()
        self._slab: bytearray | None = None  # made on the first small read; pages touched
        # only as its slots fill

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self.size or length <= 0:
            return b""
        length = min(length, self.size - offset)
        size = self._chunk
        first, last = offset // size, (offset + length - 1) // size
        if last - first + 1 >= DIRECT_CHUNKS or not self._most:
            return self._libewf(length, offset)
        out = bytearray()
        for index in range(first, last + 1):
            at = index * size
            lo, hi = max(offset, at) - at, min(offset + length, at + size) - at
            chunk, whole = self._cached(index)
            out += chunk[lo:hi]
            if not whole:
                break  # libewf gave less: what follows it is not given either
        return bytes(out)

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

    def _cached(self, index: int) -> tuple[memoryview | bytes, bool]:
        """Chunk ``index``, decompressed, and whether it is whole (a kept one, or one libewf
        gave in full); the least recently used one is dropped for it."""
        size = self._chunk
        slot = self._kept.pop(index, None)
        want = min(size, self.size - index * size)
        if slot is None:
            data = self._libewf(want, index * size)
            if len(data) != want:  # given as it is, never kept
                return data, False
            if self._slab is None:
                self._slab = bytearray(self._most * size)
            if len(self._kept) < self._most:
                slot = len(self._kept)
            else:
                _, slot = self._kept.popitem(last=False)
            self._slab[slot * size : slot * size + want] = data
        self._kept[index] = slot
        return memoryview(self._slab)[slot * size : slot * size + want], True

    def close(self) -> None:
        self._kept.clear()
        self._slab = None
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
