"""A gzip file that is not a tar: one member, named from the header (FNAME) or the file."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from examkit import __version__
from examkit.archives import CORRUPT, ArchiveFormat, ArchiveProblem, Member
from examkit.hookspecs import Register, hookimpl


def _original_name(path: Path) -> str | None:
    """The FNAME field of the gzip header, if any."""
    with open(path, "rb") as fh:
        head = fh.read(10)
        if len(head) < 10 or head[:2] != b"\x1f\x8b" or not head[3] & 0x08:
            return None
        if head[3] & 0x04:  # FEXTRA comes first
            (length,) = struct.unpack("<H", fh.read(2))
            fh.read(length)
        name = bytearray()
        while (byte := fh.read(1)) not in (b"", b"\x00"):
            name += byte
            if len(name) > 1024:
                return None
    return name.decode("latin-1") or None


class GzipFormat(ArchiveFormat):
    name = "gzip"
    version = __version__
    description = "gzip (one compressed file)"
    mimes = frozenset({"application/gzip", "application/x-gzip"})

    def members(self, path: Path, name: str) -> Iterator[tuple[Member, Any]]:
        try:
            original = _original_name(path)
        except OSError as exc:
            raise ArchiveProblem(CORRUPT, f"not a readable gzip file: {exc}") from exc
        inner = original or (name[:-3] if name.lower().endswith(".gz") else f"{name}.out")
        member = Member(path=inner.replace("\\", "/").strip("/").rsplit("/", 1)[-1],
                        size=None, compressed=path.stat().st_size)  # fmt: skip
        yield member, (lambda: gzip.open(path, "rb"))  # noqa: SIM115 - the caller closes it


@hookimpl
def register_archive_formats(register: Register) -> None:
    register(GzipFormat())
