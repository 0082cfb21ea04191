"""Expert Witness Format (E01, including segmented .E01/.E02… sets): libewf opens the set and
gives its metadata; the chunks are read straight from the segment files and checked
(``ewf_chunks.py``), and libewf reads any chunk that is not (a damaged one, a layout
not recognised there, Ex01)."""

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
from examkit_plugins.containers.ewf_chunks import INFLATE, ChunkMap

EVF1 = b"EVF\x09\x0d\x0a\xff\x00"
EVF2 = b"EVF2\x0d\x0a\x81\x00"
# Decompressed chunks kept for small reads, per open image (a worker's thread, the
# listing), when a lab sets EXAMKIT_EWF_CACHE_MB (off by default). The Sleuth Kit reads a
# small file's data and its metadata record 64 KiB at a time, and each such read
# decompresses the chunks it spans (32 KiB each, typically). Files are read in listing
# order, whose data and records lie all over the image, so the same chunks are
# decompressed again and again (a worker now reads a unit's streams in disk order,
# ``ordered_reads``, which does most of what the cache did). 25,000 small files from
# E01: 5.24 s, with 8 MiB kept per process 4.98 s (medians of 3 noisy pairs); before
# the disk order, 6.28 and 5.24 s. But each process reading small files keeps its own:
# the perceptual scan of that E01 went from 362 to 391 MiB, next to the memory bound;
# hence off unless asked for.
CACHE_ENV = "EXAMKIT_EWF_CACHE_MB"


def _kept_bytes() -> int:
    value = os.environ.get(CACHE_ENV, "").strip()
    return int(value) << 20 if value.isdigit() else 0


KEPT_BYTES = _kept_bytes()
DIRECT_CHUNKS = 8  # a read spanning this many chunks or more (a large file, the whole
# media's verification) is read as it is, and nothing is kept from it
# libewf keeps what it learns of the image's chunks until the handle is closed: ~5.5 MiB
# for each GiB read (a 20 GiB E01 read whole: 12 -> 129 MiB in one process). The handle
# is opened again after it has given this many bytes, the chunks kept here staying (that
# read: a peak of 156 -> 77 MiB, as fast; see libyal/libewf-legacy issue 17).
REOPEN_BYTES = 2 << 30
LVF = (b"LVF\x09\x0d\x0a\xff\x00", b"LEF2\x0d\x0a\x81\x00")


class EwfMedia(MediaStream):
    ordered_reads = True

    def __init__(self, paths: Sequence[Path]) -> None:
        self._paths = [str(p) for p in paths]
        self._handle: Any = self._open()
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
        self._map, self.reader = ChunkMap.read(self._paths)  # None: libewf reads every chunk
        if self._map and (self._map.chunk_size, self._map.media_size) != (self._chunk, self.size):
            self._map.close()
            self._map, self.reader = None, "its chunk size or media size differs from libewf's"
        if self._map:  # libewf is opened again only for a chunk that fails its check
            self._handle.close()
            self._handle = None
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
            return self._direct(offset, length) if self._map else self._libewf(length, offset)
        out = bytearray()
        for index in range(first, last + 1):
            at = index * size
            lo, hi = max(offset, at) - at, min(offset + length, at + size) - at
            chunk, whole = self._cached(index)
            out += chunk[lo:hi]
            if not whole:
                break  # libewf gave less: what follows it is not given either
        return bytes(out)

    def _direct(self, offset: int, length: int) -> bytes:
        """A long read, chunk by chunk from the segment files, nothing kept."""
        size, pieces, end = self._chunk, [], offset + length
        for index in range(offset // size, (end - 1) // size + 1):
            at = index * size
            want = min(size, self.size - at)
            data = self._fetch(index, want)
            lo, hi = max(offset, at) - at, min(end, at + size) - at
            pieces.append(memoryview(data)[lo:hi] if lo or hi < len(data) else data)
            if len(data) != want:
                break  # libewf gave less: what follows it is not given either
        return pieces[0] if len(pieces) == 1 and type(pieces[0]) is bytes else b"".join(pieces)

    def _fetch(self, index: int, want: int) -> bytes:
        """Chunk ``index`` (``want`` bytes): from the segment files, checked, or else from
        libewf (which may give less)."""
        data = self._map.chunk(index) if self._map else None
        return data if data is not None else self._libewf(want, index * self._chunk)

    def _libewf(self, length: int, offset: int) -> bytes:
        if self._handle is None:
            self._handle, self._read = self._open(), 0
        elif self._read >= REOPEN_BYTES:  # what libewf holds of the chunks is let go
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
            data = self._fetch(index, want)
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
        if self._map:
            self._map.close()
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None


class EwfContainer(Container):
    name = "ewf"
    version = (
        f"{__version__} (chunks read and checked by examkit, inflated by {INFLATE};"
        f" libewf {pyewf.get_version()})"
    )
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
