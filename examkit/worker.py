"""What runs in each worker process: open the evidence itself, read and hash streams.

Workers never touch the case database; they return typed results to the one
writer. Each worker keeps the evidence it last opened, so consecutive units of
one scan do not reopen images and file systems.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from . import placement
from .archives import ArchiveFormat, ArchiveLimits, ArchiveResult, expand, format_for
from .evidence import MediaStream, hash_media, open_media
from .filetype import detect_mime, extension_mismatch
from .hashing import HEAD_SIZE, StreamDigest, keep_chunk_pages, release_free_heap
from .isolation import heartbeat
from .layers import Locked, Unlock, open_chain
from .models import ERROR, OK, SHORT, StreamResult, WorkUnit
from .perceptual import IMAGE_MIMES, MAX_IMAGE_BYTES, hash_kept
from .plan import ListingOptions
from .plugins import registry
from .walk import FileSystemHandle

T = TypeVar("T")
_local = threading.local()  # one open evidence per thread (Dask workers may run several)

# How much lower than the rest of a local worker its listing and its units of small streams
# run (``settle``); EXAMKIT_READER_NICENESS=0 leaves them as they are. 19, the lowest
# priority: at 10 such a thread still took ~10% of the core a large file's digest ran on
# (Linux's weights: 110 against 1024; at 19, 15): that digest waited 0.18 s for its core
# instead of 0.11-0.12 s, and the bench image's scan took 2.09 s instead of 2.01 s (6
# alternated pairs, faster in 6; 25,000 and 100,000 small files: no change).
READER_NICENESS = 19
NICENESS_ENV = "EXAMKIT_READER_NICENESS"
_lowered: ThreadPoolExecutor | None = None  # the thread for the listing and small streams


def settle() -> None:
    """Run by each local pool worker before its first job (``examkit.executors``): start a
    thread of its own for the listing and for units of several (small) streams, at a
    priority lowered by ``READER_NICENESS`` (on Linux a thread has a niceness of its own).
    Everything else the worker runs keeps the process's priority: a stream of its own (a
    large file, whose digests are the one job of a scan that cannot be split and often end
    it) and the media's verification (which a default scan waits for, twice).

    When threads want more cores than there are, a large file's digests then get a core
    nearly to themselves (bench image, 2 cores: its lane had ~75% of one before, 90-100%
    after). With nothing else to run, the lowered work goes as fast as before."""
    global _lowered
    niceness = os.environ.get(NICENESS_ENV, "").strip()
    step = int(niceness) if niceness.isdigit() else READER_NICENESS
    if step <= 0 or not sys.platform.startswith("linux"):
        return
    _lowered = ThreadPoolExecutor(1, "examkit-lowered", initializer=_lower, initargs=(step,))
    _lowered.submit(int).result()  # started, and lowered, before the first job


def _lower(step: int) -> None:
    thread = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + step))
    except OSError:  # not allowed here: they run as the rest
        pass


def _state() -> dict[str, Any]:
    if not hasattr(_local, "state"):
        _local.state = {"key": None, "media": None, "fs": {}, "streams": {}}
    state: dict[str, Any] = _local.state
    return state


def _media(container: str, paths: tuple[str, ...]) -> MediaStream:
    key = (container, paths)
    state = _state()
    if state["key"] != key:
        _close()
        plugin = registry().get("containers", container)
        state["media"] = open_media(plugin, [Path(p) for p in paths])
        state["key"] = key
    media: MediaStream = state["media"]
    return media


def _filesystem(
    media: MediaStream, chain: str | None, walker: str, offset: int, unlocks: tuple[Unlock, ...]
) -> FileSystemHandle:
    """The file system at ``offset`` of the stream at the end of ``chain`` (opened once)."""
    state = _state()
    cache: dict[tuple[str | None, str, int], FileSystemHandle] = state["fs"]
    if (chain, walker, offset) not in cache:
        stream = media
        if chain:
            if chain not in state["streams"]:
                opened: list[MediaStream] = []
                try:
                    open_chain(media, chain, registry().volume_layers, unlocks, opened)
                except Locked as exc:
                    for s in opened:
                        s.close()
                    raise OSError(f"{exc}; give the secret with --unlock") from exc
                state["streams"][chain] = opened
            stream = state["streams"][chain][-1]
        plugin = registry().get("filesystems", walker)
        cache[(chain, walker, offset)] = plugin.open_with(stream, offset, stream.size - offset,
                                                          unlocks)  # fmt: skip
    return cache[(chain, walker, offset)]


def _close() -> None:
    state = _state()
    for handle in state["fs"].values():
        handle.close()
    state["fs"] = {}
    for opened in state["streams"].values():
        for stream in reversed(opened):
            stream.close()
    state["streams"] = {}
    if state["media"] is not None:
        state["media"].close()
    state.update(key=None, media=None)


def _message(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}".rstrip(": ")


def hash_unit(unit: WorkUnit) -> list[StreamResult]:
    """Read and hash every stream of a unit; a failing stream is recorded, not raised.

    One read per stream: the chunks feed every digest, the first bytes give the
    type; an image's chunks are also kept (up to ``MAX_IMAGE_BYTES``) to be
    decoded once for the perceptual hashes, and an archive's are spooled to a
    temporary file whose members are then read (``examkit.archives``). In a local
    pool's worker a unit of several streams runs at a lower priority (``settle``).
    """
    if len(unit.tasks) > 1:
        return _lowered_if_settled(_hash_unit, unit)
    return _hash_unit(unit)


def _lowered_if_settled(fn: Callable[..., T], *args: Any) -> T:
    return _lowered.submit(fn, *args).result() if _lowered is not None else fn(*args)


# A stream read whole in one go (most small files) is typed after the next ones have been
# read and hashed, together with theirs: typing head after head keeps libmagic's rules and
# tables in the core's caches, which reading and hashing a stream between two heads evicts
# (25,230 small streams in one process, 4 alternated rounds: 123-136 -> 112-132 us a
# stream). Its chunks are held until then: at most ``TYPE_BATCH`` streams or
# ``TYPE_BATCH_BYTES``. With the batch typed as below, 8 MiB did better than 1 MiB where
# sizes spread (25,230 streams of a used disk's sizes, alternated unit by unit in one
# process: 193-203 -> 180-186 us a stream; the bench image's small files, which rarely
# fill 1 MiB: 128-132 -> 128-134), for at most 7 MiB more held by each worker.
TYPE_BATCH = 256
TYPE_BATCH_BYTES = 8 << 20
# Within such a batch, every head is typed before the rest of any stream's result is made
# (its extension checked, what its chunks are kept for decided), ASCII heads apart from
# the others and heads that begin alike together: libmagic then runs on through one copy
# of its database after another instead of between other work. The bench image's 8,061
# small streams in one process, alternated unit by unit: 134-135 -> 126-128 us a stream
# typed first, and 2.7-5.7 us less again in this order (25,230: 218 -> 210, 4.5 less).
# The order changes no answer: each head's type is its own (filetype.detect_mime).


def _typing_order(item: tuple[int, StreamDigest, _Keeper]) -> tuple[bool, bytes]:
    head = item[1].head
    return head.isascii(), head[:2]


def _hash_unit(unit: WorkUnit) -> list[StreamResult]:
    keep_chunk_pages()  # set already in a local pool's workers; a Dask worker's first unit
    media = _media(unit.container, unit.paths)
    reg = registry()
    hashers = reg.hashers
    image_hashers = reg.image_hashers if unit.perceptual else []
    formats = reg.archive_formats if unit.archive_depth > 0 else []
    limits = ArchiveLimits(max_depth=max(1, unit.archive_depth))
    results: list[StreamResult | None] = [None] * len(unit.tasks)  # in the unit's order
    untyped: list[tuple[int, StreamDigest, _Keeper]] = []  # (place in results, ...)
    held = 0

    def finish(digest: StreamDigest, keeper: _Keeper) -> StreamResult:
        with keeper:
            task = keeper.task
            mime = keeper.finish(digest)
            mismatch = extension_mismatch(task.name, mime)
            image = hash_kept(mime, task.size, keeper.image_chunks, image_hashers)
            archive = keeper.expand(hashers, image_hashers, limits)
        short = digest.bytes < task.size
        return StreamResult(
            task.file_id, SHORT if short else OK, digest.bytes, digest.hexdigests(), mime,
            mismatch, f"file system returned {digest.bytes} of {task.size} bytes" if short
            else None, image, archive,
        )  # fmt: skip

    def finish_untyped() -> None:
        nonlocal held
        for _, digest, keeper in sorted(untyped, key=_typing_order):
            heartbeat()
            keeper.type_head(digest)  # every head first, those alike together (see above)
        for place, digest, keeper in untyped:
            heartbeat()
            results[place] = finish(digest, keeper)
        untyped.clear()
        held = 0

    for place in _read_order(unit, media):
        task = unit.tasks[place]
        heartbeat()
        keeper = _Keeper(task, image_hashers, formats)
        digest = StreamDigest(hashers)
        try:
            fs = _filesystem(media, task.chain, task.walker, task.fs_offset, unit.unlocks)
            for chunk in fs.read(task.inode, task.attr_type, task.attr_id, task.size):
                digest.update(chunk)
                heartbeat()
                keeper.add(chunk, digest)
        except Exception as exc:
            keeper.close()
            results[place] = StreamResult(task.file_id, ERROR, digest.bytes, error=_message(exc))
            continue
        if keeper.typed or len(unit.tasks) == 1:
            results[place] = finish(digest, keeper)
            continue
        untyped.append((place, digest, keeper))
        held += digest.bytes
        if len(untyped) >= TYPE_BATCH or held >= TYPE_BATCH_BYTES:
            finish_untyped()
    finish_untyped()
    placement.release()  # a stream that failed while its reader was kept off its lanes' cores
    done = [r for r in results if r is not None]
    if len(unit.tasks) > 1:  # (a large stream's chunks are reused by the next one's)
        release_free_heap(sum(r.bytes_read for r in done))
    return done


def _read_order(unit: WorkUnit, media: MediaStream) -> list[int]:
    """The order in which to read a unit's streams (places in ``unit.tasks``): as listed,
    or, from media whose scattered reads cost much more (``MediaStream.ordered_reads``:
    E01), in the order their data lie (file system, then first run; data without a run
    first, as listed). In listing order, small files' data lie all over the image, and each
    64 KiB read of The Sleuth Kit decompressed the chunks it spans again: 25,000 small
    files from E01 read at 157-190 us a file in listing order, 77-92 us in this order
    within units of 256 (a file's MFT number as the order: 155-165 us)."""
    places = list(range(len(unit.tasks)))
    if len(places) < 2 or not getattr(media, "ordered_reads", False):  # (a plugin's own media)
        return places
    keys: list[tuple[str, int, int, int]] = []
    try:
        for place, task in enumerate(unit.tasks):
            fs = _filesystem(media, task.chain, task.walker, task.fs_offset, unit.unlocks)
            offset = fs.data_offset(task.inode, task.attr_type, task.attr_id)
            where = -1 if offset is None else offset
            keys.append((task.chain or "", task.fs_offset, where, place))
    except Exception:  # read as listed: each stream's own error is recorded when it is read
        return places
    return [place for *_, place in sorted(keys)]


class _Keeper:
    """What a stream's chunks are kept for besides its digests: decoding an image (memory, up
    to ``MAX_IMAGE_BYTES``) or expanding an archive (a temporary file). Decided once the head
    is typed; until then the first chunks are held."""

    def __init__(self, task: Any, image_hashers: list[Any], formats: list[ArchiveFormat]) -> None:
        self.task, self.image_hashers, self.formats = task, image_hashers, formats
        self.mime: str | None = None
        self.head_typed = False  # ``mime`` is the head's type
        self.typed = False  # ... and what the chunks are kept for is decided
        self.held: list[bytes] = []
        self.image_chunks: list[bytes] | None = None
        self.archive_format: ArchiveFormat | None = None
        self.spool: Any = None

    def __enter__(self) -> _Keeper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()  # a temporary file: removed on close

    def add(self, chunk: bytes, digest: StreamDigest) -> None:
        if not self.typed:
            self.held.append(chunk)
            # typed now only if more chunks follow (what they are kept for depends on it)
            if digest.bytes >= HEAD_SIZE and (digest.bytes < self.task.size or len(self.held) > 1):
                self._decide(digest)
            return
        if self.image_chunks is not None:
            self.image_chunks.append(chunk)
        if self.spool is not None:
            self.spool.write(chunk)

    def finish(self, digest: StreamDigest) -> str | None:
        if not self.typed:
            self._decide(digest)
        return self.mime

    def type_head(self, digest: StreamDigest) -> None:
        """Type the head now (a stream read whole); what the chunks are kept for is decided
        when the stream is finished."""
        if not self.head_typed:
            self.mime, self.head_typed = detect_mime(digest.head), True

    def _decide(self, digest: StreamDigest) -> None:
        self.type_head(digest)
        self.typed = True
        held, self.held = self.held, []
        if self.image_hashers and self.mime in IMAGE_MIMES and self.task.size <= MAX_IMAGE_BYTES:
            self.image_chunks = held
        self.archive_format = format_for(self.formats, self.mime, digest.head)
        if self.archive_format is not None:
            self.spool = tempfile.NamedTemporaryFile(prefix="examkit-archive-")  # noqa: SIM115
            for chunk in held:
                self.spool.write(chunk)

    def expand(self, hashers: Any, image_hashers: list[Any], limits: ArchiveLimits
               ) -> ArchiveResult | None:  # fmt: skip
        if self.archive_format is None or self.spool is None:
            return None
        self.spool.flush()
        return expand(Path(self.spool.name), self.task.name, self.archive_format, hashers,
                      image_hashers, self.formats, limits)  # fmt: skip


def list_evidence(
    case_path: str,
    evidence_id: str,
    container: str,
    paths: tuple[str, ...],
    options: ListingOptions | None = None,
) -> int:
    """List every volume, file system and entry of one evidence item into the case (in a
    worker: a crash or a hang of The Sleuth Kit on corrupt metadata costs this listing, not
    the scan). The parent holds the case's lock; meanwhile it writes only the results of
    the entries already listed, which it hands out to the other workers. In a local pool's
    worker it runs at a lower priority (``settle``)."""
    return _lowered_if_settled(_list_evidence, case_path, evidence_id, container, paths, options)


def _list_evidence(
    case_path: str,
    evidence_id: str,
    container: str,
    paths: tuple[str, ...],
    options: ListingOptions | None,
) -> int:
    from .case import Case
    from .plan import plan_evidence

    plugin = registry().get("containers", container)
    with Case.open(Path(case_path)) as case, open_media(plugin, [Path(p) for p in paths]) as media:
        plan_evidence(case, registry(), evidence_id, media, options=options)
        (count,) = case.conn.execute(
            "SELECT count(*) FROM files WHERE evidence_id = ?", (evidence_id,)
        ).fetchone()
    return int(count)


def hash_whole_media(
    container: str, paths: tuple[str, ...], only: tuple[str, ...] = ()
) -> dict[str, str]:
    """MD5/SHA-1/SHA-256 (and any other hasher) of the whole media stream; with ``only``,
    just those digests."""
    keep_chunk_pages()
    plugin = registry().get("containers", container)
    hashers = [h for h in registry().hashers if not only or h.name in only]
    with open_media(plugin, [Path(p) for p in paths]) as media:
        return hash_media(media, hashers)
