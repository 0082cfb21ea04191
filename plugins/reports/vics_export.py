"""Project VIC VICS 2.0 JSON export: the case's media, for sharing with other agencies.

Hashes and metadata only, never content. One ``Media`` per distinct content
(MD5) among the streams that were read completely (``status = 'ok'``) and are
not known-good (a known-good file is noise to the receiving agency); every place
the content was found is a ``MediaFiles`` row (evidence, path, times). Content
that matched a known-bad set carries the set's category, series and flags (and
``IsPrecategorized: true`` when the set gave a category); other content has
``Category: null``. Digests are upper-case hex, as Project VIC exports write them.

Names of flagged files are withheld (``<withheld>``) unless the examiner asked
(``--show-names``, logged); every other name goes through the display gate
(control characters shown as visible escapes).

The export is written as it is read: the files are read in MD5 order (the
``files_md5`` index) and each Media is written when its last occurrence has been
read, so memory does not grow with the case. ``examkit hashset import`` reads
the file back (format ``vics``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any

from examkit import __version__
from examkit.hookspecs import Register, hookimpl
from examkit.reporting import ReportData, ReportFormat

ODATA_CONTEXT = "http://github.com/ICMEC/ProjectVic/DataModels/2.0.xml/US/$metadata#Cases"

# the streams exported: read completely, with an MD5, not known-good
_FILES_SQL = (
    "SELECT file_id, evidence_id, path, path_bytes, name, name_bytes, stream, state,"
    " md5, sha1, sha256, bytes_read, size, mtime, atime, crtime, flagged"
    " FROM files WHERE status = 'ok' AND md5 IS NOT NULL AND known_good = 0"
    " ORDER BY md5, file_id"
)
# the known-bad match that describes a content: an alerting one first, then one with a category
_MATCHES_SQL = (
    "SELECT f.md5, m.category, m.series, m.victim_identified, m.offender_identified,"
    " m.is_distributed FROM matches m JOIN files f ON f.file_id = m.file_id"
    " WHERE m.kind = 'known_bad' AND f.md5 IS NOT NULL AND f.known_good = 0"
    " ORDER BY m.alert DESC, m.category IS NULL, m.match_id"
)


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _upper(value: Any) -> str | None:
    return str(value).upper() if value else None


def _raw(text: object, raw: object, suffix: str = "") -> str | bytes:
    """The exact bytes when the name is not UTF-8 (the gate shows bad bytes as ``\\xNN``).

    ``text`` keeps a bad byte as the text ``\\xNN``, which the gate would show
    with its backslash escaped. ``suffix`` (``:stream``) is added to the bytes
    when the text has it and the bytes do not.
    """
    shown = str(text or "")
    if not isinstance(raw, bytes):
        return shown
    for candidate in (raw, raw + suffix.encode("utf-8", "surrogateescape")):
        if candidate.decode("utf-8", "backslashreplace") == shown:
            return candidate
    return shown


class VicsExport(ReportFormat):
    name = "vics"
    description = (
        "Project VIC VICS 2.0 JSON: hashes and metadata of the case's media, known-good"
        " left out (flagged names withheld)"
    )
    version = "1"
    extension = ".json"

    def write(self, data: ReportData, out: IO[bytes]) -> None:
        info = data.info
        case_id = data.gate.text(info.get("case_number"))
        case = {
            "CaseID": case_id,
            "CaseNumber": case_id,
            "SourceApplicationName": "examkit",
            "SourceApplicationVersion": __version__,
        }
        # the document around the Media array is written by hand, so the array can be streamed
        context = json.dumps({"@odata.context": ODATA_CONTEXT})[1:-1]
        fields = "".join(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}, "
                         for k, v in case.items())  # fmt: skip
        out.write(f'{{{context}, "value": [\n  {{{fields}"Media": ['.encode())
        known_bad = self._known_bad(data)
        first = True
        for media_id, media in enumerate(self._media(data, known_bad), start=1):
            media = {"MediaID": media_id, **media}
            sep = "\n    " if first else ",\n    "
            first = False
            out.write((sep + json.dumps(media, ensure_ascii=False)).encode())
        out.write(("\n  ]}\n]}\n" if not first else "]}\n]}\n").encode())

    @staticmethod
    def _known_bad(data: ReportData) -> dict[str, dict[str, Any]]:
        """MD5 -> the known-bad match that describes it (hits only: a small table)."""
        found: dict[str, dict[str, Any]] = {}
        for row in data.case.db.query(_MATCHES_SQL):
            found.setdefault(str(row["md5"]).lower(), dict(row))
        return found

    def _media(
        self, data: ReportData, known_bad: dict[str, dict[str, Any]]
    ) -> Iterator[dict[str, Any]]:
        group: list[dict[str, Any]] = []
        for row in data.case.db.query(_FILES_SQL):
            if group and row["md5"] != group[0]["md5"]:
                yield self._one(data, group, known_bad)
                group = []
            group.append(dict(row))
        if group:
            yield self._one(data, group, known_bad)

    @staticmethod
    def _one(
        data: ReportData, rows: list[dict[str, Any]], known_bad: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        head = rows[0]
        match = known_bad.get(str(head["md5"]).lower())
        media: dict[str, Any] = {
            "Category": match["category"] if match else None,
            "MD5": _upper(head["md5"]),
            "SHA1": _upper(head["sha1"]),
        }
        if head["sha256"]:
            media["SHA256"] = _upper(head["sha256"])
        size = head["bytes_read"] if head["bytes_read"] is not None else head["size"]
        media.update(
            {
                "MediaSize": size,
                "Series": data.gate.text(match["series"]) if match and match["series"] else None,
                "VictimIdentified": _bool(match["victim_identified"]) if match else None,
                "OffenderIdentified": _bool(match["offender_identified"]) if match else None,
                "IsDistributed": _bool(match["is_distributed"]) if match else None,
                "IsPrecategorized": match is not None and match["category"] is not None,
                "MediaFiles": [VicsExport._media_file(data, row) for row in rows],
            }
        )
        return media

    @staticmethod
    def _media_file(data: ReportData, row: dict[str, Any]) -> dict[str, Any]:
        flagged = bool(row["flagged"])
        suffix = f":{row['stream']}" if row["stream"] is not None else ""
        name = _raw(str(row["name"] or "") + suffix, row["name_bytes"], suffix)
        path = _raw(row["path"], row["path_bytes"], suffix)
        entry: dict[str, Any] = {
            "FileName": data.gate.name(name, flagged),
            "FilePath": data.gate.text(row["evidence_id"]) + data.gate.path(path, flagged),
        }
        for field, column in (("Created", "crtime"), ("Written", "mtime"), ("Accessed", "atime")):
            if row[column]:
                entry[field] = row[column]
        entry["Unallocated"] = row["state"] != "allocated"
        return entry


@hookimpl
def register_report_formats(register: Register) -> None:
    register(VicsExport())
