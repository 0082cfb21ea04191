"""Raw (dd) images: the media is the file itself."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from examkit import __version__
from examkit.errors import EvidenceError
from examkit.evidence import Container, MediaStream
from examkit.hookspecs import Register, hookimpl
from examkit.models import MediaInfo

# Formats that look like data but must be unpacked first.
_PACKED = {
    b"\x1f\x8b": "gzip",
    b"\xfd7zXZ\x00": "xz",
    b"BZh": "bzip2",
    b"PK\x03\x04": "zip",
    b"7z\xbc\xaf\x27\x1c": "7z",
    b"(\xb5/\xfd": "zstd",
}


def packed_format(head: bytes) -> str | None:
    """The compression format whose magic starts ``head``, if any."""
    for magic, name in _PACKED.items():
        if head.startswith(magic):
            return name
    return None


class FileSetMedia(MediaStream):
    """Media made of one or more plain files laid end to end, read with pread."""

    def __init__(self, container: str, paths: Sequence[Path]) -> None:
        self._fds: list[int] = []
        self._starts: list[int] = []
        total = 0
        try:
            for path in paths:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
                self._fds.append(fd)
                self._starts.append(total)
                total += os.fstat(fd).st_size
        except OSError as exc:
            self.close()
            raise EvidenceError(
                f"cannot open {exc.filename}: {exc.strerror}", "check the path and permissions"
            ) from exc
        self._sizes = [
            (self._starts[i + 1] if i + 1 < len(self._starts) else total) - self._starts[i]
            for i in range(len(self._starts))
        ]
        super().__init__(MediaInfo(container=container, paths=tuple(map(str, paths)), size=total))

    @property
    def native_path(self) -> str | None:
        """The single file behind this media, for libraries that read files directly."""
        return self.info.paths[0] if len(self._fds) == 1 else None

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self.size or length <= 0:
            return b""
        out = bytearray()
        index = max(0, _bisect(self._starts, offset))
        while length > 0 and index < len(self._fds):
            local = offset - self._starts[index]
            want = min(length, self._sizes[index] - local)
            if want > 0:
                data = os.pread(self._fds[index], want, local)
                if not data:
                    break
                out += data
                offset += len(data)
                length -= len(data)
                if len(data) < want:
                    break
            index += 1
        return bytes(out)

    def close(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []


def _bisect(starts: list[int], offset: int) -> int:
    lo, hi = 0, len(starts)
    while lo < hi:
        mid = (lo + hi) // 2
        if starts[mid] <= offset:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


class RawContainer(Container):
    name = "raw"
    version = __version__
    description = "raw / dd image (one file)"
    priority = 0  # the fallback: any file is a raw image

    def detect(self, path: Path, head: bytes) -> bool:
        return True

    def open(self, paths: Sequence[Path]) -> MediaStream:
        with open(paths[0], "rb") as fh:
            head = fh.read(8)
        packed = packed_format(head)
        if packed:
            raise EvidenceError(
                f"{paths[0]} is {packed}-compressed, not a disk image",
                "decompress it first (keep the original and record its hash)",
            )
        return FileSetMedia(self.name, paths)


@hookimpl
def register_containers(register: Register) -> None:
    register(RawContainer())
