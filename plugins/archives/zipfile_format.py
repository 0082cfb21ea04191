"""ZIP archives (ZIP64 included) through Python's zipfile; encrypted members are recorded as
encrypted, never guessed at."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from examkit import __version__
from examkit.archives import CORRUPT, ArchiveFormat, ArchiveProblem, Member
from examkit.hookspecs import Register, hookimpl


class ZipFormat(ArchiveFormat):
    name = "zip"
    version = __version__
    description = "ZIP and ZIP64 (zipfile); OOXML/ODF/JAR/APK are ZIPs too"
    mimes = frozenset({
        "application/zip", "application/x-zip-compressed", "application/java-archive",
        "application/vnd.android.package-archive",
    })  # fmt: skip

    def members(self, path: Path, name: str) -> Iterator[tuple[Member, Any]]:
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise ArchiveProblem(CORRUPT, f"not a readable ZIP: {exc}") from exc
        with archive:
            for info in archive.infolist():
                y, mo, d, h, mi, s = info.date_time  # DOS time: no zone, recorded as written
                member = Member(
                    path=info.filename.rstrip("/"),
                    size=info.file_size,
                    compressed=info.compress_size,
                    mtime=f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}",
                    is_dir=info.is_dir(),
                    encrypted=bool(info.flag_bits & 0x1),
                )
                yield member, (None if member.is_dir or member.encrypted
                               else (lambda i=info: archive.open(i)))  # fmt: skip


@hookimpl
def register_archive_formats(register: Register) -> None:
    register(ZipFormat())
