"""Files inside archives: the archive-format plugin kind, limits, and member expansion.

A stream whose type (libmagic) an archive plugin claims is spooled to a
temporary file while it is hashed (one read), then its members are read one by
one: each is hashed (MD5, SHA-1, SHA-256), typed and perceptually hashed like a
file, and an archive inside an archive is expanded in turn, up to
``ArchiveLimits.max_depth``. The parent records each member as a ``files`` row
whose ``parent_file_id`` is its archive and whose path is the container path,
``/Users/a/pics.zip!/folder/x.jpg``.

Archive bombs are refused, with a recorded status instead of exhausted disk
or memory: a member whose expansion ratio exceeds ``max_ratio``, more than
``max_members`` members, or more than ``max_total_bytes`` expanded in one
archive (nested archives included) stop the expansion of that archive
(``archive_status = 'bomb'``); members already read are kept. Encrypted
members are recorded as ``encrypted``, never guessed at.
"""

from __future__ import annotations

import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .filetype import detect_mime, extension_mismatch
from .hashing import HEAD_SIZE, Hasher, StreamDigest
from .isolation import heartbeat
from .perceptual import MAX_IMAGE_BYTES, ImageResult, hash_kept

READ = 1 << 20

# archive_status values
ARCHIVE_OK = "ok"
BOMB = "bomb"
CORRUPT = "corrupt"
TOO_DEEP = "too_deep"
ENCRYPTED = "encrypted"  # also a member status: its content cannot be read without a key


@dataclass(frozen=True)
class ArchiveLimits:
    """What one archive (with everything nested in it) may expand to."""

    max_depth: int = 3  # archives inside archives inside ... the file system's archive
    max_members: int = 100_000
    max_total_bytes: int = 8 << 30
    max_ratio: float = 200.0  # expanded / compressed size of one member


class ArchiveProblem(Exception):
    """The archive cannot be (fully) expanded: carries the ``archive_status`` to record."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Member:
    """One entry of an archive, as the format plugin lists it."""

    path: str  # inside the archive, '/'-separated
    size: int | None
    compressed: int | None = None
    mtime: str | None = None  # UTC ISO 8601
    is_dir: bool = False
    encrypted: bool = False
    link: bool = False  # a symbolic or hard link, device ...: no content of its own


class ArchiveFormat(ABC):
    """An archive-format plugin (registered with ``register_archive_formats``)."""

    name: str
    version: str = "0"
    description: str = ""
    mimes: frozenset[str] = frozenset()
    priority: int = 50  # higher is tried first

    def detect(self, mime: str | None, head: bytes) -> bool:
        return mime in self.mimes

    @abstractmethod
    def members(self, path: Path, name: str) -> Iterator[tuple[Member, Any]]:
        """Every member of the archive at ``path`` (called ``name`` where it was found) with
        an opener: ``opener()`` returns a binary file object for its content (``None`` for
        directories, links and encrypted members). Raise ArchiveProblem for an archive that
        cannot be read at all."""


@dataclass(frozen=True)
class MemberResult:
    """What the worker found for one member (and, for an archive, inside it)."""

    path: str
    size: int | None
    mtime: str | None
    is_dir: bool
    status: str  # ok | error | encrypted | short | no_content
    bytes_read: int = 0
    digests: dict[str, str] = field(default_factory=dict)
    mime: str | None = None
    extension_mismatch: int | None = None
    error: str | None = None
    image: ImageResult | None = None
    archive: ArchiveResult | None = None


@dataclass(frozen=True)
class ArchiveResult:
    """The expansion of one archive: its format, status and members."""

    format: str
    status: str  # ok | bomb | corrupt | too_deep | encrypted
    detail: str | None
    members: tuple[MemberResult, ...]


class _Budget:
    """Counts members and expanded bytes across one archive and what is nested in it."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.members = 0
        self.bytes = 0

    def member(self, member: Member) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise ArchiveProblem(BOMB, f"more than {self.limits.max_members:,} members")
        ratio = (member.size or 0) / max(1, member.compressed or 0)
        if member.compressed and ratio > self.limits.max_ratio:
            raise ArchiveProblem(BOMB, f"{member.path!r} expands {ratio:,.0f} times "
                                       f"(limit {self.limits.max_ratio:,.0f})")  # fmt: skip
        if (member.size or 0) + self.bytes > self.limits.max_total_bytes:
            raise ArchiveProblem(BOMB, f"more than {self.limits.max_total_bytes:,} bytes expanded")

    def grow(self, nbytes: int) -> None:
        self.bytes += nbytes
        if self.bytes > self.limits.max_total_bytes:  # a lying header: caught while reading
            raise ArchiveProblem(BOMB, f"more than {self.limits.max_total_bytes:,} bytes expanded")


def format_for(
    formats: Sequence[ArchiveFormat], mime: str | None, head: bytes
) -> ArchiveFormat | None:
    return next((f for f in formats if f.detect(mime, head)), None)


def expand(
    path: Path,
    name: str,
    fmt: ArchiveFormat,
    hashers: Sequence[Hasher],
    image_hashers: Sequence[Any],
    formats: Sequence[ArchiveFormat],
    limits: ArchiveLimits,
    depth: int = 1,
    budget: _Budget | None = None,
) -> ArchiveResult:
    """Read every member of the archive at ``path`` (a spooled copy); never raises for a bad
    archive or member: problems become statuses."""
    budget = budget or _Budget(limits)
    results: list[MemberResult] = []
    status, detail = ARCHIVE_OK, None
    try:
        for member, opener in fmt.members(path, name):
            heartbeat()
            budget.member(member)
            results.append(_member(member, opener, hashers, image_hashers, formats, limits,
                                   depth, budget))  # fmt: skip
    except ArchiveProblem as problem:
        status, detail = problem.status, problem.detail
    except Exception as exc:  # a damaged archive: keep what was read, say why it stopped
        status, detail = CORRUPT, f"{type(exc).__name__}: {str(exc)[:200]}"
    return ArchiveResult(fmt.name, status, detail, tuple(results))


def _member(
    member: Member,
    opener: Any,
    hashers: Sequence[Hasher],
    image_hashers: Sequence[Any],
    formats: Sequence[ArchiveFormat],
    limits: ArchiveLimits,
    depth: int,
    budget: _Budget,
) -> MemberResult:
    if member.is_dir or member.link:
        return MemberResult(member.path, member.size, member.mtime, member.is_dir, "no_content")
    if member.encrypted or opener is None:
        why = "encrypted: the content cannot be read without the key"
        return MemberResult(member.path, member.size, member.mtime, False, ENCRYPTED, error=why)
    digest = StreamDigest(hashers)
    kept: list[bytes] = []
    name = member.path.rsplit("/", 1)[-1]
    try:
        with opener() as stream, tempfile.TemporaryFile(prefix="examkit-member-") as spool:
            mime: str | None = None
            inner: ArchiveFormat | None = None
            while chunk := stream.read(READ):
                budget.grow(len(chunk))
                digest.update(chunk)
                if image_hashers and digest.bytes <= MAX_IMAGE_BYTES:
                    kept.append(chunk)
                if mime is None and digest.bytes >= HEAD_SIZE:  # typed once the head is in
                    mime = detect_mime(digest.head)
                    inner = format_for(formats, mime, digest.head)
                if inner is not None or mime is None:  # only an archive is kept on disk
                    spool.write(chunk)
                heartbeat()
            if mime is None:
                mime = detect_mime(digest.head)
                inner = format_for(formats, mime, digest.head)
            image = hash_kept(mime, digest.bytes, kept, image_hashers)
            nested = None
            if inner is not None:
                nested = _nested(spool, name, inner, hashers, image_hashers, formats, limits,
                                 depth, budget)  # fmt: skip
    except ArchiveProblem:
        raise  # a bomb stops the whole archive
    except Exception as exc:
        why = f"{type(exc).__name__}: {str(exc)[:200]}"
        return MemberResult(member.path, member.size, member.mtime, False, "error",
                            digest.bytes, error=why)  # fmt: skip
    status = "ok" if member.size is None or digest.bytes == member.size else "short"
    return MemberResult(member.path, member.size, member.mtime, False, status, digest.bytes,
                        digest.hexdigests(), mime, extension_mismatch(name, mime), None, image,
                        nested)  # fmt: skip


def _nested(
    spool: IO[bytes],
    name: str,
    fmt: ArchiveFormat,
    hashers: Sequence[Hasher],
    image_hashers: Sequence[Any],
    formats: Sequence[ArchiveFormat],
    limits: ArchiveLimits,
    depth: int,
    budget: _Budget,
) -> ArchiveResult:
    if depth >= limits.max_depth:
        why = f"nested deeper than {limits.max_depth} archives: not expanded"
        return ArchiveResult(fmt.name, TOO_DEEP, why, ())
    spool.flush()
    spool.seek(0)
    with tempfile.NamedTemporaryFile(prefix="examkit-archive-") as copy:
        shutil.copyfileobj(spool, copy, READ)
        copy.flush()
        return expand(Path(copy.name), name, fmt, hashers, image_hashers, formats, limits,
                      depth + 1, budget)  # fmt: skip
