"""TAR archives, plain or compressed (tar.gz, tar.bz2, tar.xz), through Python's tarfile.

A compressed tar is claimed as a tar (its members are listed as ``x.tar.gz!/dir/file``) when
the first decompressed block holds a tar header; any other gzip file is the gzip plugin's."""

from __future__ import annotations

import bz2
import lzma
import tarfile
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from examkit import __version__
from examkit.archives import CORRUPT, ArchiveFormat, ArchiveProblem, Member
from examkit.hookspecs import Register, hookimpl

COMPRESSED = {"application/gzip", "application/x-gzip", "application/x-bzip2", "application/x-xz"}


def _inflate(head: bytes) -> bytes:
    """The first decompressed bytes of a gzip, bzip2 or xz head ('' if it is none of them)."""
    starts = ((b"\x1f\x8b", lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)),
              (b"BZh", bz2.BZ2Decompressor), (b"\xfd7zXZ\x00", lzma.LZMADecompressor))  # fmt: skip
    for start, make in starts:
        if head.startswith(start):
            try:
                return bytes(make().decompress(head))
            except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError):
                return b""
    return b""


def _is_tar(block: bytes) -> bool:
    return len(block) >= 262 and block[257:262] == b"ustar"


class TarFormat(ArchiveFormat):
    name = "tar"
    version = __version__
    description = "TAR, tar.gz, tar.bz2, tar.xz (tarfile)"
    mimes = frozenset({"application/x-tar", "application/x-gtar"})
    priority = 60  # before gzip: a tar.gz is a tar, its members listed directly

    def detect(self, mime: str | None, head: bytes) -> bool:
        if mime in self.mimes:
            return True
        return mime in COMPRESSED and _is_tar(_inflate(head))

    def members(self, path: Path, name: str) -> Iterator[tuple[Member, Any]]:
        try:
            archive = tarfile.open(path, mode="r:*")  # noqa: SIM115 - closed below
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ArchiveProblem(CORRUPT, f"not a readable TAR: {exc}") from exc
        with archive:
            for info in archive:
                mtime = datetime.fromtimestamp(info.mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                member = Member(
                    path=info.name.strip("/"),
                    size=info.size if info.isfile() else 0,
                    compressed=None,  # a tar stream: the whole archive is compressed at once
                    mtime=mtime,
                    is_dir=info.isdir(),
                    link=not (info.isfile() or info.isdir()),
                )
                yield member, ((lambda i=info: archive.extractfile(i)) if info.isfile() else None)


@hookimpl
def register_archive_formats(register: Register) -> None:
    register(TarFormat())
