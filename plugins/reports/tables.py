"""Flat reports: CSV of every file, and a hashdeep list for auditing extracted files."""

from __future__ import annotations

import csv
import io
from typing import IO

from examkit.hookspecs import Register, hookimpl
from examkit.query import FILE_COLUMNS
from examkit.reporting import ReportData, ReportFormat

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class CsvReport(ReportFormat):
    name = "csv"
    description = "CSV: one row per file or stream, every column (flagged names withheld)"
    extension = ".csv"

    def write(self, data: ReportData, out: IO[bytes]) -> None:
        text = io.TextIOWrapper(out, encoding="utf-8", newline="")
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(FILE_COLUMNS)
        for row in data.files():
            flagged = bool(row["flagged"])
            row["path"] = data.gate.path(row["path"], flagged)
            row["name"] = data.gate.name(row["name"], flagged)
            values = []
            for column in FILE_COLUMNS:
                value = row.get(column)
                if isinstance(value, str) and value.startswith(_FORMULA_START):
                    value = "'" + value  # a spreadsheet must not run it as a formula
                values.append("" if value is None else value)
            writer.writerow(values)
        text.flush()
        text.detach()


class HashdeepReport(ReportFormat):
    name = "hashdeep"
    description = "hashdeep audit list (size, md5, sha256, path) for 'hashdeep -a -k'"
    extension = ".hashdeep"

    def write(self, data: ReportData, out: IO[bytes]) -> None:
        head = [
            "%%%% HASHDEEP-1.0",
            "%%%% size,md5,sha256,filename",
            f"## examkit case {data.gate.text(data.info['case_number'])}",
            "## one line per hashed stream; names of flagged files withheld",
            "##",
        ]
        out.write(("\n".join(head) + "\n").encode("utf-8"))
        for row in data.files():
            if row["status"] != "ok" or not row["md5"]:
                continue
            path = data.gate.path(row["path"], bool(row["flagged"]))
            line = f"{row['bytes_read']},{row['md5']},{row['sha256']},{row['evidence_id']}{path}\n"
            out.write(line.encode("utf-8"))


@hookimpl
def register_report_formats(register: Register) -> None:
    register(CsvReport())
    register(HashdeepReport())
