"""``export``: copy file content out of the evidence, safely, checked, and on the record.

Each stream is read from the image again (read-only, through the same plugins
as the scan) and written into the destination folder:

- names are made safe: ``<file_id>-<name>`` with anything but letters,
  digits, ``.``, ``_`` and ``-`` replaced, no leading dot, at most 120
  characters; a flagged file is written as ``<file_id>.bin`` so that its
  name appears neither on disk nor on screen;
- files are created inside the folder only (opened relative to the folder's
  descriptor, ``O_EXCL | O_NOFOLLOW``): no traversal, no symlink followed,
  nothing overwritten; the folder itself must not be a symlink;
- each exported file's MD5, SHA-1 and SHA-256 must equal what the scan
  recorded, else the export fails (and the file is removed);
- ``manifest.hashdeep`` (hashdeep audit format) lists every file written;
- an ``export`` custody entry records who, why, which files, where, and the
  hashes. Exporting a flagged file requires a reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .case import Case
from .errors import EvidenceError, UsageError
from .evidence import open_media
from .locking import case_lock
from .plugins import registry
from .runs import check_unchanged

MANIFEST = "manifest.hashdeep"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_KEYS = ("file_id", "name", "stream", "inode", "attr_type", "attr_id", "size", "status", "md5",
         "sha1", "sha256", "flagged", "walker", "offset", "container", "paths")  # fmt: skip


@dataclass(frozen=True)
class Exported:
    file_id: int
    name: str  # the safe name in the folder
    size: int
    md5: str
    sha1: str
    sha256: str
    flagged: bool


def safe_name(file_id: int, name: str | None, flagged: bool) -> str:
    """The name an exported stream gets in the destination folder."""
    if flagged or not name:
        return f"{file_id}.bin"
    clean = _UNSAFE.sub("_", name).lstrip(".-_")[:120] or "file"
    return f"{file_id}-{clean}"


def export_files(
    case_path: Path,
    file_ids: Sequence[int],
    folder: Path,
    reason: str | None,
    actor: str | None,
) -> list[Exported]:
    """Export the streams ``file_ids`` of the case into ``folder`` (see the module doc)."""
    if not file_ids:
        raise UsageError("no file to export", "give --file-id (repeatable)")
    with case_lock(case_path, "export"), Case.open(case_path) as case:
        check_unchanged(case)  # the recorded hashes the export is checked against must hold
        rows = _rows(case, file_ids)
        flagged = [r["file_id"] for r in rows if r["flagged"]]
        if flagged and not (reason and reason.strip()):
            raise UsageError(
                f"{len(flagged)} of the files are flagged (known-bad): exporting them needs "
                "a reason",
                "give --reason TEXT (it goes into the custody log)",
            )
        dir_fd = _open_folder(folder)
        try:
            if _exists(dir_fd, MANIFEST):
                raise UsageError(f"{folder} already holds an export ({MANIFEST})",
                                 "export into a new, empty folder")  # fmt: skip
            done = [_export_one(case, row, dir_fd) for row in rows]
            _write_manifest(dir_fd, done)
        finally:
            os.close(dir_fd)
        case.log(
            "export",
            actor,
            {
                "folder": str(Path(folder).resolve()),
                "reason": reason,
                "files": [
                    {"file_id": e.file_id, "exported_as": e.name, "size": e.size, "md5": e.md5,
                     "sha1": e.sha1, "sha256": e.sha256, "flagged": e.flagged}
                    for e in done
                ],
            },
        )  # fmt: skip
    return done


def _rows(case: Case, file_ids: Sequence[int]) -> list[dict[str, object]]:
    rows = []
    for file_id in dict.fromkeys(int(f) for f in file_ids):
        row = case.conn.execute(
            "SELECT f.file_id, f.name, f.stream, f.inode, f.attr_type, f.attr_id, f.size,"
            " f.status, f.md5, f.sha1, f.sha256, f.flagged, fs.walker, fs.offset, e.container,"
            " e.source_paths FROM files f JOIN filesystems fs USING (filesystem_id)"
            " JOIN evidence e ON e.evidence_id = f.evidence_id WHERE f.file_id = ?",
            (file_id,),
        ).fetchone()
        if row is None:
            inside = case.conn.execute(
                "SELECT parent_file_id FROM files WHERE file_id = ? AND parent_file_id IS NOT NULL",
                (file_id,),
            ).fetchone()
            if inside:
                hint = f"export the archive (--file-id {inside[0]}) and open it"
                raise UsageError(f"file {file_id} is a member of the archive {inside[0]}", hint)
            raise UsageError(f"no file with id {file_id} in the case",
                             "'examkit files CASE' lists the ids")  # fmt: skip
        record = dict(zip(_KEYS, row, strict=True))
        if record["status"] != "ok" or not record["md5"]:
            raise UsageError(
                f"file {file_id} has no recorded hashes (status {record['status']}): it cannot "
                "be exported and checked",
                "export only streams the scan read completely (status ok)",
            )
        rows.append(record)
    return rows


def _open_folder(folder: Path) -> int:
    folder = Path(folder)
    if folder.is_symlink():
        raise UsageError(f"{folder} is a symbolic link", "give a real folder")
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    if not stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise UsageError(f"{folder} is not a folder", "give a folder with --to")
    return fd


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _export_one(case: Case, row: dict[str, object], dir_fd: int) -> Exported:
    name = safe_name(int(str(row["file_id"])), str(row["stream"] or row["name"] or ""),
                     bool(row["flagged"]))  # fmt: skip
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640,
                     dir_fd=dir_fd)  # fmt: skip
    except FileExistsError as exc:
        raise UsageError(f"{name} already exists in the export folder: nothing is overwritten",
                         "export into a new, empty folder") from exc  # fmt: skip
    digests = [hashlib.md5(), hashlib.sha1(), hashlib.sha256()]
    size = 0
    try:
        plugin = registry().get("containers", str(row["container"]))
        paths = [Path(p) for p in json.loads(str(row["paths"]))]
        with os.fdopen(fd, "wb") as out, open_media(plugin, paths) as media:
            walker = registry().get("filesystems", str(row["walker"]))
            offset = int(str(row["offset"]))
            fs = walker.open(media, offset, media.size - offset)
            try:
                for chunk in fs.read(int(str(row["inode"])), _int(row["attr_type"]),
                                     _int(row["attr_id"]), int(str(row["size"]))):  # fmt: skip
                    out.write(chunk)
                    size += len(chunk)
                    for d in digests:
                        d.update(chunk)
            finally:
                fs.close()
        md5, sha1, sha256 = (d.hexdigest() for d in digests)
        if (md5, sha1, sha256) != (row["md5"], row["sha1"], row["sha256"]):
            raise EvidenceError(
                f"file {row['file_id']}: the exported content does not match the recorded hashes",
                "the evidence may have changed since the scan: run 'examkit verify --rehash'",
            )
    except BaseException:
        os.unlink(name, dir_fd=dir_fd)
        raise
    return Exported(int(str(row["file_id"])), name, size, md5, sha1, sha256, bool(row["flagged"]))


def _int(value: object) -> int | None:
    return None if value is None else int(str(value))


def _write_manifest(dir_fd: int, done: list[Exported]) -> None:
    lines = [
        "%%%% HASHDEEP-1.0",
        "%%%% size,md5,sha1,sha256,filename",
        "## Invoked from: examkit export",
        "## $ examkit export",
        "##",
    ] + [f"{e.size},{e.md5},{e.sha1},{e.sha256},{e.name}" for e in done]
    fd = os.open(MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640,
                 dir_fd=dir_fd)  # fmt: skip
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write("\n".join(lines) + "\n")
