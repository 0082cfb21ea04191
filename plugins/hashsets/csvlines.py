"""Shared by the CSV-like loaders (ICSE, HashKeeper): text decoding and the row loop."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from examkit.hashformat import EntrySink, strip_bom


def decoded_lines(path: Path) -> Iterator[str]:
    """The file's lines as text, line ends kept: UTF-8 (BOM dropped), else cp1252, else latin-1."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh):
            data = strip_bom(raw) if number == 0 else raw
            try:
                yield data.decode("utf-8")
            except UnicodeDecodeError:
                try:
                    yield data.decode("cp1252")
                except UnicodeDecodeError:
                    yield data.decode("latin-1")


def csv_rows(
    reader: Any, width: int, sink: EntrySink, separator: str
) -> Iterator[tuple[int, list[str], str]]:
    """``(line number, fields, line text)`` of each row of a ``csv.reader`` with ``width`` fields.

    Unreadable CSV and rows with another number of fields are reported to the
    sink as malformed; blank lines are skipped.
    """
    while True:
        line = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            sink.malformed(line, f"unreadable CSV: {err}")
            continue
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue  # blank line
        text = separator.join(fields)
        if len(fields) != width:
            sink.malformed(line, f"{len(fields)} fields, the header has {width}", text)
            continue
        yield line, fields, text
