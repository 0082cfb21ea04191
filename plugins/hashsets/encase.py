"""EnCase legacy ``.hash`` hash sets (EnCase 4 to 6), binary.

Layout (as read by The Sleuth Kit, tsk/hashdb/encase.c, and described on the
Forensics Wiki "EnCase hash file" page)::

    0x000  8   magic  "HASH\\r\\n\\xff\\x00"
    0x008  8   unknown (02 00 00 00 01 00 00 00 in EnCase 6 files)
    0x010  4   number of records, little-endian uint32
    0x014      zeros
    0x408  80  hash set name, UTF-16LE, NUL-terminated (up to 39 characters)
    0x458  40  hash set category, UTF-16LE, NUL-terminated (up to 19 characters)
    0x480      records, 18 bytes each: the raw 16-byte MD5, then 2 (zero) bytes

The file ends with the last record, so its size must be ``0x480 + 18 * count``;
anything else means a truncated or damaged file and raises :class:`HashSetError`
before a single entry is imported. Records carry no name, size or metadata;
the set's name and category go to the provenance. An all-zero MD5 is reported
as malformed (numbered by record, from 1).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from examkit.hashformat import EntrySink, HashSetError, HashSetFormat
from examkit.hookspecs import Register, hookimpl

MAGIC = b"HASH\r\n\xff\x00"
COUNT_OFFSET = 0x10
NAME_SPAN = (0x408, 0x458)
CATEGORY_SPAN = (0x458, 0x480)
RECORDS = 0x480
RECORD = 18
BATCH = 1 << 16  # records handed to the sink at once


def _utf16z(raw: bytes) -> str:
    """A NUL-terminated UTF-16LE string."""
    for i in range(0, len(raw) - 1, 2):
        if raw[i : i + 2] == b"\0\0":
            raw = raw[:i]
            break
    return raw.decode("utf-16-le", "replace").strip()


class EnCaseHashFormat(HashSetFormat):
    name = "encase-hash"
    description = "EnCase legacy .hash (binary MD5 set, magic HASH\\r\\n\\xff\\x00)"
    version = "1"
    priority = 90

    def detect(self, head: bytes, path: Path) -> bool:
        return head.startswith(MAGIC)

    def read(self, path: Path, sink: EntrySink) -> None:
        import numpy as np  # here, not at the top: the scan's workers load every plugin

        with open(path, "rb") as fh:
            header = fh.read(RECORDS)
            if not header.startswith(MAGIC):
                raise HashSetError(
                    f"{path.name}: not an EnCase hash set: the file does not start with "
                    f"'HASH\\r\\n\\xff\\x00' (found {header[:8]!r})",
                    "choose the right format, or check the file is not damaged",
                )
            if len(header) < RECORDS:
                raise HashSetError(
                    f"{path.name}: EnCase hash set is truncated: {len(header)} bytes, "
                    f"the header alone is {RECORDS}",
                    "the file is incomplete; copy or export it again",
                )
            (count,) = struct.unpack_from("<I", header, COUNT_OFFSET)
            size = os.fstat(fh.fileno()).st_size
            expected = RECORDS + RECORD * count
            if size != expected:
                held = (size - RECORDS) / RECORD
                problem = "is truncated" if size < expected else "has data after its last record"
                raise HashSetError(
                    f"{path.name}: EnCase hash set {problem}: the header says {count} records "
                    f"({expected} bytes) but the file is {size} bytes ({held:g} records)",
                    "the file is incomplete or damaged; copy or export it again",
                )
            sink.provenance(
                set_name=_utf16z(header[slice(*NAME_SPAN)]) or None,
                set_category=_utf16z(header[slice(*CATEGORY_SPAN)]) or None,
                encase_records=count,
            )
            done = 0
            while done < count:
                n = min(BATCH, count - done)
                data = fh.read(n * RECORD)
                if len(data) != n * RECORD:  # the file shrank while we read it
                    raise HashSetError(
                        f"{path.name}: EnCase hash set ended early, at record {done + 1}",
                        "the file is incomplete; copy or export it again",
                    )
                records = np.frombuffer(data, dtype=np.uint8).reshape(n, RECORD)
                md5 = np.ascontiguousarray(records[:, :16])
                empty = ~md5.any(axis=1)
                for i in np.flatnonzero(empty):
                    sink.malformed(
                        done + int(i) + 1,
                        "all-zero MD5 (empty record)",
                        data[int(i) * RECORD : (int(i) + 1) * RECORD].hex(),
                    )
                kept = md5[~empty] if empty.any() else md5
                if len(kept):
                    sink.add_columns({"md5": kept.view("S16").reshape(-1)})
                done += n


@hookimpl
def register_hashset_formats(register: Register) -> None:
    register(EnCaseHashFormat())
