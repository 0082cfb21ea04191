"""7z archives through py7zr: members are extracted one archive at a time into a private
temporary folder (7z is usually solid), after their declared sizes passed the bomb limits."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from examkit import __version__
from examkit.archives import CORRUPT, ENCRYPTED, ArchiveFormat, ArchiveProblem, Member
from examkit.hookspecs import Register, hookimpl


class SevenZipFormat(ArchiveFormat):
    name = "7z"
    description = "7-Zip (py7zr)"
    mimes = frozenset({"application/x-7z-compressed"})

    def __init__(self) -> None:
        from importlib import metadata

        try:
            self.version = f"{__version__} (py7zr {metadata.version('py7zr')})"
        except metadata.PackageNotFoundError:
            self.version = f"{__version__} (py7zr not installed)"

    def members(self, path: Path, name: str) -> Iterator[tuple[Member, Any]]:
        try:
            import py7zr
        except ImportError as exc:
            raise ArchiveProblem(CORRUPT, "7z needs the py7zr package") from exc
        try:
            archive = py7zr.SevenZipFile(path, mode="r")
        except py7zr.exceptions.PasswordRequired as exc:
            raise ArchiveProblem(ENCRYPTED, "the archive's headers are encrypted") from exc
        except Exception as exc:
            raise ArchiveProblem(CORRUPT, f"not a readable 7z archive: {exc}") from exc
        with archive:
            if archive.needs_password():
                for info in archive.list():
                    yield Member(info.filename, info.uncompressed, info.compressed,
                                 is_dir=info.is_directory,
                                 encrypted=not info.is_directory), None  # fmt: skip
                return
            infos = archive.list()
            members = [Member(i.filename, i.uncompressed, i.compressed or None,
                              is_dir=i.is_directory) for i in infos]  # fmt: skip
            with tempfile.TemporaryDirectory(prefix="examkit-7z-") as folder:
                extracted = False
                for member in members:
                    if member.is_dir:
                        yield member, None
                        continue
                    if not extracted:  # after the first member passed the limits
                        archive.extractall(path=folder)
                        extracted = True
                    target = Path(folder, member.path)
                    yield member, (lambda t=target: open(t, "rb"))  # noqa: SIM115 - caller closes


@hookimpl
def register_archive_formats(register: Register) -> None:
    register(SevenZipFormat())
