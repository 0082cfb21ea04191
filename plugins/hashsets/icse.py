"""Interpol ICSE (International Child Sexual Exploitation database) CSV exports.

``;``-separated, one header line, then one image per line::

    MD5;SHA1;PhotoDNA;Image ID;Is distributed;Victim identified;Offender identified;Series name;...

Columns are found by their header name (case and blanks ignored), so their
order may vary and extra columns are allowed (and ignored). Fields may be
quoted; the file may start with a UTF-8 BOM and use CRLF line ends. A line is
malformed when its number of fields differs from the header's, or when it has
no valid MD5/SHA1 (or one that is not hex of the right length). Lines are
numbered from 1 (the header); a record spanning lines is numbered by its first.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from examkit.hashformat import (
    EntrySink,
    HashSetError,
    HashSetFormat,
    parse_bool,
    parse_int,
    strip_bom,
)
from examkit.hookspecs import Register, hookimpl

from .csvlines import csv_rows, decoded_lines

_HEX = re.compile(r"[0-9a-fA-F]+")
_DIGESTS = {"md5": 32, "sha1": 40, "sha256": 64}

# normalised header name -> entry field ("md5", "name", "size") or meta key
_COLUMNS = {
    "md5": "md5",
    "sha1": "sha1",
    "sha-1": "sha1",
    "sha256": "sha256",
    "sha-256": "sha256",
    "photodna": "photodna",
    "image id": "media_id",
    "is distributed": "is_distributed",
    "victim identified": "victim_identified",
    "offender identified": "offender_identified",
    "series name": "series",
    "series": "series",
    "category": "category",
    "file name": "name",
    "filename": "name",
    "file size": "size",
    "size": "size",
    "comments": "comments",
    "comment": "comments",
}
_BOOLEANS = ("is_distributed", "victim_identified", "offender_identified")
# one of these besides MD5 tells an ICSE header from any other ``MD5;...`` list
_ICSE_MARKERS = ("photodna", "image id", "victim identified", "offender identified", "series name")


def _normalise(header: str) -> str:
    return " ".join(header.replace("_", " ").strip().strip('"').split()).lower()


def _first_line(head: bytes) -> str:
    return strip_bom(head).split(b"\n", 1)[0].rstrip(b"\r").decode("latin-1")


class IcseCsvFormat(HashSetFormat):
    name = "icse-csv"
    description = "Interpol ICSE CSV export (';'-separated, MD5;SHA1;PhotoDNA;Image ID;...)"
    version = "1"
    priority = 70

    def detect(self, head: bytes, path: Path) -> bool:
        line = _first_line(head)
        if ";" not in line:
            return False
        names = {_normalise(field) for field in line.split(";")}
        return "md5" in names and any(marker in names for marker in _ICSE_MARKERS)

    def read(self, path: Path, sink: EntrySink) -> None:
        lines = decoded_lines(path)
        reader = csv.reader(lines, delimiter=";", quotechar='"')
        try:
            header = next(reader)
        except StopIteration:
            raise HashSetError(
                f"{path.name}: empty file", "an ICSE export starts with a header line"
            ) from None
        columns: dict[int, str] = {}
        for i, title in enumerate(header):
            key = _COLUMNS.get(_normalise(title))
            if key is not None and key not in columns.values():
                columns[i] = key
        if not any(key in _DIGESTS for key in columns.values()):
            raise HashSetError(
                f"{path.name}: no MD5 or SHA1 column in the header",
                "an ICSE export's header names its columns: MD5;SHA1;PhotoDNA;Image ID;...",
            )
        sink.provenance(icse_columns=[title.strip() for title in header])
        for line, fields, text in csv_rows(reader, len(header), sink, ";"):
            self._row(fields, columns, line, text, sink)

    @staticmethod
    def _row(
        fields: list[str], columns: dict[int, str], line: int, text: str, sink: EntrySink
    ) -> None:
        values: dict[str, str] = {key: fields[i].strip() for i, key in columns.items()}
        digests: dict[str, str] = {}
        for algo, length in _DIGESTS.items():
            value = values.get(algo, "")
            if not value:
                continue
            if len(value) != length or not _HEX.fullmatch(value):
                sink.malformed(line, f"{algo.upper()} is not {length} hex digits", text)
                return
            digests[algo] = value.lower()
        if not digests:
            sink.malformed(line, "no MD5 or SHA1", text)
            return
        media_id: Any = values.get("media_id") or None
        if media_id is not None and parse_int(media_id) is not None:
            media_id = parse_int(media_id)
        meta: dict[str, Any] = {key: parse_bool(values.get(key)) for key in _BOOLEANS}
        meta.update(
            category=parse_int(values.get("category")),
            series=values.get("series") or None,
            media_id=media_id,
            photodna=values.get("photodna") or None,
            comments=values.get("comments") or None,
        )
        size = parse_int(values.get("size"))
        sink.add(
            **digests,
            name=values.get("name") or None,
            size=size if size is not None and size >= 0 else None,
            meta={k: v for k, v in meta.items() if v is not None},
            line=line,
        )


@hookimpl
def register_hashset_formats(register: Register) -> None:
    register(IcseCsvFormat())
