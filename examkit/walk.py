"""Volumes -> file systems -> entries, through volume-system and walker plugins."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .evidence import MediaStream
from .models import FileEntry, FileSystemInfo, Volume

if TYPE_CHECKING:
    from .layers import Unlock


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


@dataclass(frozen=True)
class EncryptedPart:
    """An encrypted part inside a file system (an APFS volume), unlocked or not."""

    type: str  # "APFS volume"
    identifiers: Mapping[str, str]
    unlocked_with: str | None  # the kind of secret that opened it; None: still locked
    error: str | None = None


class FileSystemHandle(ABC):
    """An opened file system: list its entries, read its streams."""

    info: FileSystemInfo
    encrypted: tuple[EncryptedPart, ...] = ()  # recorded in the custody log by the listing

    @abstractmethod
    def entries(self) -> Iterator[FileEntry]:
        """Every entry, in a stable order (``seq`` counts from 0)."""

    @abstractmethod
    def read(
        self, inode: int, attr_type: int | None, attr_id: int | None, size: int
    ) -> Iterator[bytes]:
        """The content of one stream, in chunks."""

    def data_offset(self, inode: int, attr_type: int | None, attr_id: int | None) -> int | None:
        """Where a stream's data starts in the file system (bytes; its first run), or None
        when the walker does not say (resident data, none, or not known)."""
        return None

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

    def open_with(
        self, media: MediaStream, offset: int, length: int, unlocks: Sequence[Unlock]
    ) -> FileSystemHandle:
        """Open it with the examiner's ``--unlock`` secrets, for file systems that encrypt
        parts of themselves (APFS volumes); other walkers have no use for them."""
        return self.open(media, offset, length)


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
    media: MediaStream,
    volume: Volume,
    walkers: Sequence[FileSystemWalker],
    unlocks: Sequence[Unlock] = (),
) -> FileSystemAttempt:
    """Try each walker on a volume; the first that opens it wins."""
    reasons: list[str] = []
    for walker in walkers:
        try:
            handle = walker.open_with(media, volume.start, volume.length, unlocks)
        except NotRecognised as exc:
            reasons.append(f"{walker.name}: {exc}")
            continue
        except Exception as exc:  # a walker failing on corrupt data must not stop the scan
            reasons.append(f"{walker.name}: {type(exc).__name__}: {exc}")
            continue
        return FileSystemAttempt(volume, handle, None)
    return FileSystemAttempt(volume, None, "; ".join(reasons) or "no file-system plugin")
