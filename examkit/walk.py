"""Volumes -> file systems -> entries, through volume-system and walker plugins."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .evidence import MediaStream
from .models import FileEntry, FileSystemInfo, Volume


class NotRecognised(Exception):
    """A plugin does not recognise the data it was given (not an error of the evidence)."""


class VolumeSystem(ABC):
    """A volume-system plugin (partition tables)."""

    name: str
    version: str = "0"
    description: str = ""
    priority: int = 50

    @abstractmethod
    def volumes(self, media: MediaStream) -> list[Volume]:
        """Every region of the media, or raise ``NotRecognised``."""


class FileSystemHandle(ABC):
    """An opened file system: list its entries, read its streams."""

    info: FileSystemInfo

    @abstractmethod
    def entries(self) -> Iterator[FileEntry]:
        """Every entry, in a stable order (``seq`` counts from 0)."""

    @abstractmethod
    def read(
        self, inode: int, attr_type: int | None, attr_id: int | None, size: int
    ) -> Iterator[bytes]:
        """The content of one stream, in chunks."""

    def close(self) -> None:
        """Release resources."""


class FileSystemWalker(ABC):
    """A file-system walker plugin."""

    name: str
    version: str = "0"
    description: str = ""
    priority: int = 50

    @abstractmethod
    def open(self, media: MediaStream, offset: int, length: int) -> FileSystemHandle:
        """Open the file system at ``offset``, or raise ``NotRecognised`` / an error."""


@dataclass(frozen=True)
class FileSystemAttempt:
    """The outcome of looking for a file system in a volume."""

    volume: Volume
    handle: FileSystemHandle | None
    error: str | None


def find_volumes(media: MediaStream, systems: Sequence[VolumeSystem]) -> list[Volume]:
    """The volumes of the media; one ``whole`` volume when there is no partition table."""
    for system in systems:
        try:
            found = system.volumes(media)
        except NotRecognised:
            continue
        if any(v.walkable for v in found):
            return found
    return [Volume(index=0, kind="whole", start=0, length=media.size, description="whole media")]


def open_filesystem(
    media: MediaStream, volume: Volume, walkers: Sequence[FileSystemWalker]
) -> FileSystemAttempt:
    """Try each walker on a volume; the first that opens it wins."""
    reasons: list[str] = []
    for walker in walkers:
        try:
            handle = walker.open(media, volume.start, volume.length)
        except NotRecognised as exc:
            reasons.append(f"{walker.name}: {exc}")
            continue
        except Exception as exc:  # a walker failing on corrupt data must not stop the scan
            reasons.append(f"{walker.name}: {type(exc).__name__}: {exc}")
            continue
        return FileSystemAttempt(volume, handle, None)
    return FileSystemAttempt(volume, None, "; ".join(reasons) or "no file-system plugin")
