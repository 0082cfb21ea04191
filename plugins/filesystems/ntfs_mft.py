"""The largest files of an NTFS volume, found in its MFT before the directory walk.

A large file's digests are the longest single job of a scan, and they start only once
the listing has reached the file: on the bench image with its 1.2 GB file in the walk's
last folder, ~0.3 s after the walk began, and the scan ended that much later. The MFT
holds one record per file; a search of its bytes for the header of a non-resident,
unnamed ``$DATA`` attribute whose size field is large (in C, ``re``) finds the records
worth reading, each is then read in full (update sequence applied, attributes walked),
and the folders above each file are followed up to the root through their
``$FILE_NAME`` attributes. ``TskFileSystem.entries`` lists those files first, through
The Sleuth Kit like every other entry, and leaves them out when its walk reaches them.

Only a hint for the order of the rows: a record that cannot be read is left out, a
file whose folders do not lead to the root is left out, any other error means no hint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from examkit.plan import LARGE_STREAM

MFT_INODE, BOOT_INODE, ROOT_INODE = 0, 7, 5
FILE_NAME, DATA, END = 0x30, 0x80, 0xFFFFFFFF
DOS_NAMESPACE = 2  # a $FILE_NAME holding only the 8.3 name
STRIDE = 512  # the update sequence protects the last two bytes of every 512
MAX_MFT_BYTES = 256 << 20  # a larger MFT is not searched (its walk takes minutes anyway)
READ = 4 << 20  # the MFT is searched this much at a time
MAX_FILES = 16
MAX_DEPTH = 64

MIN_SIZE = LARGE_STREAM  # a stream hashed as a unit of its own


@lru_cache(maxsize=8)
def header_pattern(bits: int) -> re.Pattern[bytes]:
    """The header of a non-resident attribute of type $DATA (0x80) with no name, whose real
    size (8 bytes at offset 0x30, little-endian) is ``2**bits`` or more: its byte
    ``bits // 8`` at least ``2**(bits % 8)``, or a byte above that one set. Headers start
    on 8-byte boundaries (checked on each match)."""
    if not 0 <= bits < 64:
        raise ValueError(f"size of 2**{bits} bytes")
    byte, low = divmod(bits, 8)
    above = 7 - byte
    size = b"(?:.{%d}[\\x%02x-\\xff].{%d}" % (byte, 1 << low, above)
    if above:
        size += b"|.{%d}(?!\\x00{%d}).{%d}" % (byte + 1, above, above)
    return re.compile(rb"\x80\x00\x00\x00.{4}\x01\x00.{38}" + size + b")", re.DOTALL)


@dataclass(frozen=True)
class Record:
    """What one MFT record says of its file."""

    inode: int
    in_use: bool
    directory: bool
    base: int  # the base record of an extension record, else 0
    parent: int | None  # from its first $FILE_NAME that is not a DOS name only
    size: int | None  # its unnamed $DATA's real size, from the first extent


def _u(data: bytes | bytearray, offset: int, width: int) -> int:
    return int.from_bytes(data[offset : offset + width], "little")


def record_size(boot: bytes) -> int:
    """The MFT record size an NTFS boot sector gives (ValueError if it is not one)."""
    if len(boot) < 0x48 or boot[3:11] != b"NTFS    ":
        raise ValueError("not an NTFS boot sector")
    cluster = _u(boot, 0x0B, 2) * boot[0x0D]
    value = boot[0x40] - 256 if boot[0x40] > 127 else boot[0x40]
    size = 1 << -value if value < 0 else value * cluster
    if size < STRIDE or size > 1 << 16 or size & (size - 1):
        raise ValueError(f"MFT record size {size}")
    return size


def parse_record(raw: bytes, inode: int) -> Record | None:
    """One MFT record, its update sequence applied; None if it is not a sound record."""
    size = len(raw)
    if size < STRIDE or raw[:4] != b"FILE":
        return None
    data = bytearray(raw)
    usa, count = _u(data, 4, 2), _u(data, 6, 2)
    if count != size // STRIDE + 1 or usa + 2 * count > size:
        return None
    usn = data[usa : usa + 2]
    for k in range(1, count):
        end = k * STRIDE
        if data[end - 2 : end] != usn:
            return None  # a torn write, or not a record
        data[end - 2 : end] = data[usa + 2 * k : usa + 2 * k + 2]
    flags = _u(data, 0x16, 2)
    parent: int | None = None
    length: int | None = None
    offset = _u(data, 0x14, 2)
    while offset + 16 <= size:
        kind, span = _u(data, offset, 4), _u(data, offset + 4, 4)
        if kind == END or span < 16 or offset + span > size:
            break
        resident = data[offset + 8] == 0
        named = data[offset + 9] != 0
        if kind == FILE_NAME and resident and parent is None:
            content = offset + _u(data, offset + 0x14, 2)
            if content + 0x42 <= offset + span and data[content + 0x41] != DOS_NAMESPACE:
                parent = _u(data, content, 6)  # the low 48 bits of the reference
        elif kind == DATA and not named and length is None:
            if resident:
                length = _u(data, offset + 0x10, 4)
            elif span >= 0x40 and _u(data, offset + 0x10, 8) == 0:  # the first extent
                length = _u(data, offset + 0x30, 8)
        offset += span
    return Record(inode, bool(flags & 1), bool(flags & 2), _u(data, 0x20, 6), parent, length)


def _a_large_file(record: Record, min_size: int) -> bool:
    return (record.in_use and not record.directory and not record.base
            and (record.size or 0) >= min_size)  # fmt: skip


class MftReader:
    """Records of one NTFS file system, read through TSK (``fs``: a pytsk3 FS_Info)."""

    def __init__(self, fs: Any) -> None:
        self.record = record_size(fs.open_meta(inode=BOOT_INODE).read_random(0, 512))
        self.mft = fs.open_meta(inode=MFT_INODE)
        self.size = int(self.mft.info.meta.size)

    def read(self, inode: int) -> Record | None:
        raw = self.mft.read_random(inode * self.record, self.record)
        return parse_record(raw, inode) if len(raw) == self.record else None

    def large(self, min_size: int = MIN_SIZE) -> list[Record]:
        """In-use files whose unnamed $DATA holds at least ``min_size`` bytes, largest
        first (at most ``MAX_FILES``)."""
        if self.size > MAX_MFT_BYTES or min_size < 1:
            return []
        pattern = header_pattern(min_size.bit_length() - 1)
        found: list[Record] = []
        step = READ - READ % self.record
        for start in range(0, self.size, step):
            chunk = self.mft.read_random(start, min(step, self.size - start))
            if not chunk:
                break
            seen = set()
            for match in pattern.finditer(chunk):
                if match.start() % 8:
                    continue
                at = match.start() - match.start() % self.record  # chunks hold whole records
                if at in seen:
                    continue
                seen.add(at)
                record = parse_record(chunk[at : at + self.record], (start + at) // self.record)
                if record is not None and _a_large_file(record, min_size):
                    found.append(record)
        found.sort(key=lambda r: (-(r.size or 0), r.inode))
        return found[:MAX_FILES]

    def folders(self, record: Record) -> tuple[int, ...] | None:
        """The folders from the root down to ``record``'s own (the root left out), or None
        when its parents do not lead to the root."""
        chain: list[int] = []
        parent = record.parent
        while parent != ROOT_INODE:
            if parent is None or parent in chain or len(chain) >= MAX_DEPTH:
                return None
            folder = self.read(parent)
            if folder is None or not (folder.in_use and folder.directory):
                return None
            chain.append(parent)
            parent = folder.parent
        return tuple(reversed(chain))


def large_files(fs: Any, min_size: int = MIN_SIZE) -> list[tuple[int, tuple[int, ...]]]:
    """The in-use files of NTFS ``fs`` of at least ``min_size`` bytes, largest first: each
    its inode and its folders' inodes from the root down. Empty on any error."""
    try:
        reader = MftReader(fs)
        out = []
        for record in reader.large(min_size):
            folders = reader.folders(record)
            if folders is not None:
                out.append((record.inode, folders))
        return out
    except (OSError, ValueError, IndexError):
        return []
