"""An E01 set's chunks read straight from its segment files, each one checked by its own
checksum, for the EWF container (``ewf.py``), which keeps libewf for the rest.

EWF-E01 (EnCase 6 and later, ewfacquire, FTK Imager) stores the media in chunks (32 KiB,
typically), each either deflated (a zlib stream: its Adler-32 is checked as it inflates)
or stored with its Adler-32 after it. ``table`` sections give where each chunk starts.
Through pyewf a chunk cost ~135 us and held the GIL (~126 MB/s, measured); read from
the tables and inflated by ISA-L, 626 MB/s on the same image's deflated chunks (zlib:
279), and other threads run meanwhile.

Only what can be checked is given: a chunk whose data fails its checksum, decompresses to
the wrong length, or lies outside its ``sectors`` section, and every chunk of a table or
a set laid out in a way not recognised here (SMART and the original EWF, whose volume
section differs; Ex01; tables whose offsets overflow, as EnCase before 6 wrote segments
over 2 GiB), is left to libewf (``chunk`` returns None), so what a scan reads
equals what libewf gives (tests/test_ewf_chunks.py: the fixture and the corpus's six
E01s, from three versions of libewf, ewfacquire and FTK Imager, and damaged copies;
tests/test_ewf_formats.py: every format ewfacquire writes).
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from array import array
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

try:  # ISA-L inflates E01 chunks 2.2x as fast as zlib (626 against 279 MB/s, measured),
    # giving the same bytes and checking the same Adler-32
    from isal import __version__ as _isal_version
    from isal.isal_zlib import decompress as _inflate
    from isal.isal_zlib import error as _InflateError

    INFLATE = f"ISA-L (isal {_isal_version})"
except ImportError:  # pragma: no cover - isal is a dependency; zlib does the same, slower
    from zlib import decompress as _inflate
    from zlib import error as _InflateError

    INFLATE = f"zlib {zlib.ZLIB_RUNTIME_VERSION}"

EVF1 = b"EVF\x09\x0d\x0a\xff\x00"
SECTION = struct.Struct("<16sQQ40sI")  # type, next section's offset, size, -, Adler-32
TABLE_HEADER = struct.Struct("<IIQII")  # entries, -, base offset, -, Adler-32
VOLUME_SIZE = 1052  # an E01 volume section's data (EWF-S01's is 94: not read here)
COMPRESSED = 1 << 31
TABLES_KEPT = 8  # tables' entries kept per open set (64 Ki entries, 256 KiB, at most)
FILES_KEPT = 32  # segment files kept open per set
MAX_SECTIONS = 1 << 20  # in one segment: more means a loop in a damaged chain


@dataclass(frozen=True)
class _Table:
    """One ``table`` section: which chunks it places, and where its entries are."""

    first: int  # the media's index of its first chunk
    count: int
    segment: int  # index in the set's paths
    entries_at: int  # file offset of its entries
    base: int  # added to each entry's offset
    data_start: int  # the ``sectors`` section its chunks must lie in
    data_end: int


class ChunkMap:
    """Where every chunk of an E01 set lies, and each chunk read and checked."""

    def __init__(self, paths: Sequence[str], chunk_size: int, media_size: int) -> None:
        self.paths = list(paths)
        self.chunk_size = chunk_size
        self.media_size = media_size
        self.tables: list[_Table] = []
        self._firsts: list[int] = []
        self._entries: OrderedDict[int, array[int] | None] = OrderedDict()
        self._fds: OrderedDict[int, int] = OrderedDict()

    @classmethod
    def read(cls, paths: Sequence[str]) -> tuple[ChunkMap | None, str]:
        """The set's chunk map, or None and why this reader leaves the set to libewf."""
        try:
            return cls._parse(paths)
        except (OSError, ValueError, struct.error) as exc:
            return None, f"unreadable layout ({exc})"

    @classmethod
    def _parse(cls, paths: Sequence[str]) -> tuple[ChunkMap | None, str]:
        volume: tuple[int, int, int, int] | None = None
        tables: list[_Table] = []
        first = 0
        for segment, path in enumerate(paths):
            with open(path, "rb") as f:
                head = f.read(13)
                if head[:8] != EVF1 or int.from_bytes(head[9:11], "little") != segment + 1:
                    return None, f"segment {segment + 1} is not EWF-E01 in sequence"
                at, sectors, ended = 13, None, False
                for _ in range(MAX_SECTIONS):
                    f.seek(at)
                    raw = f.read(SECTION.size)
                    if len(raw) < SECTION.size:
                        return None, f"segment {segment + 1} ends inside a section"
                    kind_raw, following, size, _, checksum = SECTION.unpack(raw)
                    if zlib.adler32(raw[:72]) != checksum:
                        return None, f"a section descriptor's checksum fails at {at}"
                    kind = kind_raw.rstrip(b"\0")
                    if kind in (b"volume", b"disk") and volume is None:
                        data = f.read(VOLUME_SIZE)
                        if size - SECTION.size != VOLUME_SIZE or len(data) != VOLUME_SIZE:
                            return None, "not an E01 volume section"
                        if zlib.adler32(data[:1048]) != int.from_bytes(data[1048:], "little"):
                            return None, "the volume section's checksum fails"
                        volume = struct.unpack_from("<IIIQ", data, 4)
                    elif kind == b"sectors":
                        sectors = (at + SECTION.size, at + size)
                    elif kind == b"table":
                        header = f.read(TABLE_HEADER.size)
                        count, _, base, _, table_sum = TABLE_HEADER.unpack(header)
                        if zlib.adler32(header[:20]) != table_sum:
                            return None, f"a table header's checksum fails at {at}"
                        if sectors is None:
                            return None, "a table without a sectors section before it"
                        entries_at = at + SECTION.size + TABLE_HEADER.size
                        tables.append(_Table(first, count, segment, entries_at, base, *sectors))
                        first += count
                    if kind in (b"next", b"done") or following == at:
                        ended = True
                        break
                    if following < at + SECTION.size:
                        return None, f"the section chain goes back at {at}"
                    at = following
                if not ended:
                    return None, f"segment {segment + 1} has no next or done section"
        if volume is None:
            return None, "no volume section"
        count, per_chunk, sector_size, sectors_total = volume
        chunk_size, media_size = per_chunk * sector_size, sectors_total * sector_size
        if not chunk_size or first != count or not tables:
            return None, f"the tables place {first} chunks, the volume says {count}"
        if not (count - 1) * chunk_size < media_size <= count * chunk_size:
            return None, "the chunk count does not cover the media size"
        found = cls(paths, chunk_size, media_size)
        found.tables = tables
        found._firsts = [t.first for t in tables]
        return found, "read directly"

    def chunk(self, index: int) -> bytes | None:
        """Chunk ``index`` of the media, decompressed and checked; None when only libewf
        should give it (a failed check, a table laid out in a way not known here)."""
        table = self.tables[bisect_right(self._firsts, index) - 1]
        at = index - table.first
        entries = self._table_entries(table) if 0 <= at < table.count else None
        if entries is None:
            return None
        entry = entries[at]
        start = table.base + (entry & ~COMPRESSED)
        want = min(self.chunk_size, self.media_size - index * self.chunk_size)
        fd = self._fd(table.segment)
        if entry & COMPRESSED:
            end = table.base + (entries[at + 1] & ~COMPRESSED) if at + 1 < table.count else 0
            end = min(end or table.data_end, table.data_end, start + 2 * self.chunk_size)
            try:
                data = _inflate(os.pread(fd, end - start, start))
            except _InflateError:
                return None
            return data if len(data) == want else None
        if start + want + 4 > table.data_end:
            return None
        stored = os.pread(fd, want + 4, start)
        if len(stored) != want + 4:
            return None
        data = stored[:want]
        return data if zlib.adler32(data) == int.from_bytes(stored[want:], "little") else None

    def _table_entries(self, table: _Table) -> array[int] | None:
        """A table's entries (None if they fail their checksum or lie outside its sectors
        section, or out of order), the last ``TABLES_KEPT`` kept."""
        key = table.first
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        raw = os.pread(self._fd(table.segment), table.count * 4 + 4, table.entries_at)
        entries: array[int] | None = None
        if len(raw) == table.count * 4 + 4:
            entries = array("I", raw[:-4])  # 4 bytes an entry, not a tuple of ints (~36)
            if sys.byteorder == "big":
                entries.byteswap()
        offsets = [table.base + (e & ~COMPRESSED) for e in entries or ()]
        if (
            entries is None
            or zlib.adler32(raw[:-4]) != int.from_bytes(raw[-4:], "little")
            or any(b <= a for a, b in pairwise(offsets))
            or (offsets and (offsets[0] < table.data_start or offsets[-1] >= table.data_end))
        ):
            entries = None
        self._entries[key] = entries
        if len(self._entries) > TABLES_KEPT:
            self._entries.popitem(last=False)
        return entries

    def _fd(self, segment: int) -> int:
        fd = self._fds.pop(segment, None)
        if fd is None:
            fd = os.open(self.paths[segment], os.O_RDONLY)
            if len(self._fds) >= FILES_KEPT:
                os.close(self._fds.popitem(last=False)[1])
        self._fds[segment] = fd
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._entries.clear()
