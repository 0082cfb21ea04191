"""Evidence containers: open images read-only, hash the media, verify acquisition hashes."""

from __future__ import annotations

import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import EvidenceError, UsageError
from .hashing import Hasher, StreamDigest
from .isolation import heartbeat
from .models import MediaInfo, Verification

MEDIA_CHUNK = 4 << 20
ALGORITHMS = ("md5", "sha1", "sha256")


class MediaStream(ABC):
    """Read-only random access to the media inside a container."""

    # Whether reads far apart cost much more than reads in order (each decompresses the
    # chunks it spans: E01): a worker then reads a unit's streams in the order their data
    # lie (``examkit.worker``).
    ordered_reads = False

    def __init__(self, info: MediaInfo) -> None:
        self.info = info
        self._adapters: dict[str, Any] = {}

    @property
    def size(self) -> int:
        return self.info.size

    @abstractmethod
    def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset`` (fewer only at the end of the media)."""

    def close(self) -> None:
        """Release file handles."""

    def adapter(self, key: str, factory: Callable[[MediaStream], Any]) -> Any:
        """A per-stream cached object built by a plugin (e.g. a TSK image handle)."""
        if key not in self._adapters:
            self._adapters[key] = factory(self)
        return self._adapters[key]

    def chunks(self, chunk_size: int = MEDIA_CHUNK) -> Iterator[bytes]:
        """The whole media, in order."""
        offset = 0
        while offset < self.size:
            data = self.read(offset, min(chunk_size, self.size - offset))
            if not data:
                raise EvidenceError(
                    f"media ends early at byte {offset} of {self.size}",
                    "the image may be truncated; check it with the acquisition tool",
                )
            offset += len(data)
            yield data

    def __enter__(self) -> MediaStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Container(ABC):
    """A container plugin: recognises an image format by content and opens it."""

    name: str
    version: str = "0"
    description: str = ""
    priority: int = 50  # higher is tried first

    @abstractmethod
    def detect(self, path: Path, head: bytes) -> bool:
        """Whether ``path`` (whose first bytes are ``head``) is this format."""

    def segments(self, path: Path) -> list[Path]:
        """Every file of the set that ``path`` belongs to, in order."""
        return [path]

    @abstractmethod
    def open(self, paths: Sequence[Path]) -> MediaStream:
        """Open the set read-only."""


def read_head(path: Path, size: int = 512) -> bytes:
    """The first bytes of a file, opened read-only."""
    try:
        kind = os.stat(path).st_mode
        if not (stat.S_ISREG(kind) or stat.S_ISBLK(kind) or stat.S_ISDIR(kind)):
            # a named pipe, socket or terminal: no random access, and opening a pipe
            # that nobody writes to would wait for ever
            raise EvidenceError(
                f"{path} is not a file or a disk (a pipe, socket or character device)",
                "give the image file, or the block device of a write-blocked disk",
            )
        with open(path, "rb") as fh:
            return fh.read(size)
    except IsADirectoryError as exc:
        raise EvidenceError(f"{path} is a folder, not an image", "name the image file") from exc
    except FileNotFoundError as exc:
        raise EvidenceError(f"no such image: {path}", "check the path") from exc
    except OSError as exc:
        raise EvidenceError(
            f"cannot read {path}: {exc.strerror}", "check permissions on the image"
        ) from exc


def choose_container(path: Path, containers: Sequence[Container]) -> Container:
    """The first container (by priority) that recognises ``path``."""
    head = read_head(path)
    for container in containers:
        if container.detect(path, head):
            return container
    raise EvidenceError(
        f"no container plugin recognises {path}",
        "run 'examkit plugins' to see the formats this installation reads",
    )


def group_images(
    paths: Sequence[Path], containers: Sequence[Container]
) -> list[tuple[Container, list[Path]]]:
    """Group the given image files into evidence sets (one per split/segmented set)."""
    groups: list[tuple[Container, list[Path]]] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(os.path.abspath(given))
        if path in seen:
            continue
        container = choose_container(path, containers)
        segments = [Path(os.path.abspath(p)) for p in container.segments(path)]
        if path not in segments:
            segments = [path]
        if seen.intersection(segments):
            raise UsageError(
                f"{given} belongs to a set that was already given",
                "give each split or segmented set once (its first file is enough)",
            )
        seen.update(segments)
        groups.append((container, segments))
    return groups


def open_media(container: Container, paths: Sequence[Path]) -> MediaStream:
    """Open a set with ``container``, turning library errors into ``EvidenceError``."""
    try:
        return container.open(paths)
    except EvidenceError:
        raise
    except (OSError, ValueError, RuntimeError) as exc:
        raise EvidenceError(
            f"cannot open {paths[0]} as {container.name}: {exc}",
            "the image may be corrupt or incomplete (are all segments present?)",
        ) from exc


def hash_media(
    media: MediaStream,
    hashers: Sequence[Hasher],
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, str]:
    """Hash the whole media stream once with every hasher."""
    digest = StreamDigest(hashers)
    for chunk in media.chunks():
        digest.update(chunk)
        heartbeat()  # a long read that progresses is not a hang
        if on_progress:
            on_progress(len(chunk))
    return digest.hexdigests()


def parse_expect(values: Sequence[str]) -> dict[str, str]:
    """Parse ``--expect ALGO:HEX`` values into ``{algo: hex}``."""
    lengths = {"md5": 32, "sha1": 40, "sha256": 64}
    expected: dict[str, str] = {}
    for value in values:
        algo, sep, hexd = value.partition(":")
        algo = algo.strip().lower().replace("-", "")
        hexd = hexd.strip().lower()
        if not sep or algo not in lengths:
            raise UsageError(
                f"cannot read --expect {value!r}", "write it as md5:HEX, sha1:HEX or sha256:HEX"
            )
        if len(hexd) != lengths[algo] or any(c not in "0123456789abcdef" for c in hexd):
            raise UsageError(
                f"--expect {algo} needs {lengths[algo]} hex digits, got {hexd!r}",
                "copy the hash from the acquisition record",
            )
        expected[algo] = hexd
    return expected


def verify(computed: Mapping[str, str], expected: Mapping[str, str]) -> Verification:
    """Compare media hashes with acquisition hashes (what ewfverify does)."""
    common = [a for a in ALGORITHMS if a in expected and a in computed]
    if not expected:
        return Verification("not_verifiable", dict(computed), {}, "no acquisition hash known")
    if not common:
        return Verification(
            "not_verifiable", dict(computed), dict(expected), "no common algorithm to compare"
        )
    bad = [a for a in common if computed[a] != expected[a]]
    if bad:
        detail = "; ".join(f"{a}: expected {expected[a]}, computed {computed[a]}" for a in bad)
        return Verification("mismatch", dict(computed), dict(expected), detail)
    return Verification("match", dict(computed), dict(expected), "matches " + ", ".join(common))
