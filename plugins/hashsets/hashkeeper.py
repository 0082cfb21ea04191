"""HashKeeper ``.hsh`` hash sets (the US NDIC's HashKeeper, also read by The Sleuth Kit).

A quoted, comma-separated file with this header::

    "file_id","hashset_id","file_name","directory","hash","file_size","date_modified",
    "time_modified","time_zone","comments","date_accessed","time_accessed"

``hash`` is an MD5. Each row gives an entry with ``name`` = file_name,
``size`` = file_size and metadata ``file_path`` (directory), ``comments``,
``file_id`` and ``hashset_id``. Columns are found by header name. A row is
malformed when its number of fields differs from the header's or its hash is
not 32 hex digits. Lines are numbered from 1 (the header). Old files are often
Windows-1252; each line is read as UTF-8 if it can be, else as cp1252.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from examkit.hashformat import EntrySink, HashSetError, HashSetFormat, parse_int, strip_bom
from examkit.hookspecs import Register, hookimpl

from .csvlines import csv_rows, decoded_lines

_HEX = re.compile(r"[0-9a-fA-F]{32}")
# The Sleuth Kit's test (tsk/hashdb/hashkeeper.c) checks these five leading names.
_LEADING = ("file_id", "hashset_id", "file_name", "directory", "hash")
_KEEP_SET_IDS = 100  # distinct hashset_id values recorded in the provenance


def _id(value: str) -> int | str | None:
    number = parse_int(value)
    return number if number is not None else (value or None)


class HashKeeperFormat(HashSetFormat):
    name = "hashkeeper"
    description = "HashKeeper .hsh (quoted CSV: file_id, hashset_id, file_name, directory, hash)"
    version = "1"
    priority = 70

    def detect(self, head: bytes, path: Path) -> bool:
        line = strip_bom(head).split(b"\n", 1)[0].rstrip(b"\r").decode("latin-1")
        names = [field.strip().strip('"').strip().lower() for field in line.split(",")]
        return tuple(names[: len(_LEADING)]) == _LEADING

    def read(self, path: Path, sink: EntrySink) -> None:
        reader = csv.reader(decoded_lines(path))
        try:
            header = [title.strip().lower() for title in next(reader)]
        except StopIteration:
            raise HashSetError(
                f"{path.name}: empty file", "a .hsh file starts with a header"
            ) from None
        if "hash" not in header:
            raise HashSetError(
                f"{path.name}: no 'hash' column in the HashKeeper header",
                'a .hsh header reads "file_id","hashset_id","file_name","directory","hash",...',
            )
        col = {title: i for i, title in reversed(list(enumerate(header)))}
        set_ids: dict[Any, None] = {}  # insertion-ordered set
        for line, fields, text in csv_rows(reader, len(header), sink, ","):

            def get(title: str, fields: list[str] = fields) -> str:
                return fields[col[title]].strip() if title in col else ""

            md5 = get("hash")
            if not _HEX.fullmatch(md5):
                reason = "no hash" if not md5 else "hash is not an MD5 (32 hex digits)"
                sink.malformed(line, reason, text)
                continue
            hashset_id = _id(get("hashset_id"))
            if hashset_id is not None and len(set_ids) < _KEEP_SET_IDS:
                set_ids.setdefault(hashset_id)
            meta = {
                "file_path": get("directory") or None,
                "comments": get("comments") or None,
                "file_id": _id(get("file_id")),
                "hashset_id": hashset_id,
            }
            size = parse_int(get("file_size"))
            sink.add(
                md5=md5.lower(),
                name=get("file_name") or None,
                size=size if size is not None and size >= 0 else None,
                meta={k: v for k, v in meta.items() if v is not None},
                line=line,
            )
        sink.provenance(hashkeeper_hashset_ids=list(set_ids) or None)


@hookimpl
def register_hashset_formats(register: Register) -> None:
    register(HashKeeperFormat())
