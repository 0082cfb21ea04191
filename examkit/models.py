"""Typed records that flow between stages. Only renderers turn them into text."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .archives import ArchiveResult
from .perceptual import ImageResult

# Read status of a stream in ``files.status``.
PENDING = "pending"  # listed, not hashed yet
OK = "ok"  # read fully and hashed
SHORT = "short"  # the file system gave fewer bytes than the recorded size
ERROR = "error"  # reading failed; ``error`` says why
NO_CONTENT = "no_content"  # directory, link, device: recorded without content
NO_METADATA = "no_metadata"  # a deleted name whose metadata entry is gone
REALLOCATED = "reallocated"  # a deleted name whose metadata now belongs to another file
STATUSES = (PENDING, OK, SHORT, ERROR, NO_CONTENT, NO_METADATA, REALLOCATED)

# Entry states in ``files.state``.
ALLOCATED = "allocated"
DELETED = "deleted"
ORPHAN = "orphan"


@dataclass(frozen=True)
class MediaInfo:
    """An opened evidence item: the container and what it says about itself."""

    container: str
    paths: tuple[str, ...]
    size: int
    sector_size: int = 512
    stored_hashes: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Volume:
    """A region of the media: a partition, a partition table, or unallocated space."""

    index: int
    kind: str  # partition | unallocated | meta | whole
    start: int  # bytes from the start of the media
    length: int  # bytes
    description: str = ""
    slot: int | None = None
    system: str | None = None  # dos | gpt | ... | None (no partition table)

    @property
    def walkable(self) -> bool:
        """Whether a file system may be looked for in this volume."""
        return self.kind in ("partition", "whole")


@dataclass(frozen=True)
class FileSystemInfo:
    """What a walker found in a volume."""

    walker: str
    fs_type: str
    offset: int
    block_size: int = 0
    block_count: int = 0
    label: str | None = None
    details: Mapping[str, Any] | None = None  # stored as JSON in ``filesystems.details``


class FileEntry(NamedTuple):
    """One data stream (or content-less entry) found by a walker, metadata only.

    This and the other per-stream records (``StreamTask``, ``StreamResult``) are named
    tuples, not frozen dataclasses: one of each is made for every stream of a scan, and the
    last two cross between processes. A dataclass took 1.9-4.2 microseconds to make and
    4-5 to pickle and unpickle, a named tuple 0.5 and 1-2.5 (20,103 small files: 2.30-2.67
    -> 2.19-2.30 s, 6 interleaved pairs)."""

    seq: int
    path: str
    name: str
    stream: str | None
    inode: int | None
    attr_type: int | None
    attr_id: int | None
    meta_type: str
    size: int
    state: str
    status: str  # PENDING when it has content to read, else why not
    path_bytes: bytes | None = None
    name_bytes: bytes | None = None
    mtime: str | None = None
    atime: str | None = None
    ctime: str | None = None
    crtime: str | None = None
    error: str | None = None

    @property
    def allocated(self) -> bool:
        return self.state == ALLOCATED


class StreamTask(NamedTuple):
    """What a worker needs to read one stream: where it is, not what it is called."""

    file_id: int
    walker: str
    fs_offset: int
    inode: int
    attr_type: int | None
    attr_id: int | None
    size: int
    name: str  # the file (or stream) name, for the extension check only
    chain: str | None = None  # volume layers from the media to the file system (examkit.layers)


@dataclass(frozen=True)
class WorkUnit:
    """A batch of streams from one evidence item, hashed by one worker."""

    container: str
    paths: tuple[str, ...]
    tasks: tuple[StreamTask, ...]
    perceptual: bool = True  # hash images perceptually (off: --no-perceptual)
    archive_depth: int = 3  # archives expanded this many levels deep (0: not at all)
    unlocks: tuple[Any, ...] = field(default=(), repr=False)  # examkit.layers.Unlock: secrets

    @property
    def size(self) -> int:
        return sum(t.size for t in self.tasks)


_NO_DIGESTS: Mapping[str, str] = {}  # a failed stream's (a plain dict: results are pickled)


class StreamResult(NamedTuple):
    """The outcome of reading one stream."""

    file_id: int
    status: str
    bytes_read: int
    digests: Mapping[str, str] = _NO_DIGESTS  # shared: never changed in place
    mime: str | None = None
    extension_mismatch: int | None = None
    error: str | None = None
    image: ImageResult | None = None  # perceptual hashes of an image stream
    archive: ArchiveResult | None = None  # members of an archive stream


@dataclass(frozen=True)
class Verification:
    """Media hashes compared with acquisition hashes."""

    result: str  # match | mismatch | not_verifiable | not_checked
    computed: Mapping[str, str] = field(default_factory=dict)
    expected: Mapping[str, str] = field(default_factory=dict)
    detail: str = ""


@dataclass(frozen=True)
class EvidenceSummary:
    """What one scan did to one evidence item."""

    evidence_id: str
    container: str
    media_size: int
    volumes: int
    filesystems: int
    filesystem_errors: int
    files: int
    bytes_hashed: int
    by_status: Mapping[str, int]
    by_state: Mapping[str, int]
    verification: str
    verification_detail: str = ""
    flagged: int = 0  # streams matching an alerting known-bad entry
    known_good: int = 0  # streams matching a known-good set
    locked: tuple[str, ...] = ()  # encrypted volumes left locked: "volume 2: LUKS2 {uuid}"


@dataclass(frozen=True)
class ScanSummary:
    """The result of ``scan``: one entry per evidence item, and the run."""

    case: str
    run_id: int
    status: str
    seconds: float
    evidence: tuple[EvidenceSummary, ...]
    failures: tuple[str, ...] = ()  # "EVIDENCE_ID: why" for each evidence item that failed


@dataclass(frozen=True)
class HashSetInfo:
    """A compiled hash set in the library: what it is and where it came from."""

    name: str
    kind: str  # known_bad | known_good
    format: str  # loader plugin that read it
    entries: int
    algorithms: Mapping[str, Mapping[str, int]]  # {"md5": {"count": n, "unique": u}}
    source_name: str
    source_sha256: str
    source_size: int
    imported_utc: str
    imported_by: str | None = None
    description: str | None = None
    provenance: Mapping[str, object] = field(default_factory=dict)
    category_profile: Mapping[str, object] = field(default_factory=dict)
    malformed: int = 0
    path: str = ""


@dataclass(frozen=True)
class MatchCounts:
    """Hits of one matching pass."""

    files_checked: int = 0
    matches: int = 0
    flagged: int = 0  # files newly flagged (known-bad, alerting)
    known_good: int = 0  # files newly marked known-good
