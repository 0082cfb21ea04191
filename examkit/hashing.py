"""One read, many digests: every chunk of a stream feeds every hasher."""

from __future__ import annotations

import collections
import functools
import os
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from . import placement

# 4 MiB: hashlib releases the GIL for it, and each chunk costs one hand-over to the digest
# threads and one wait for them (against 1 MiB: 2% less wall time on large files, mean of
# 11 interleaved pairs, faster in 9); a reading thread holds at most AHEAD + 1 at a time.
CHUNK_SIZE = 4 << 20
HEAD_SIZE = 8192  # bytes kept from the start of each stream for type detection

# Digest names that have their own column in ``files``; others go to ``files.digests``.
COLUMN_DIGESTS = ("md5", "sha1", "sha256")


class HashObject(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


class Hasher(ABC):
    """A hasher plugin: a named streaming digest (``md5``, ``sha1`` ...).

    ``standard`` says that it computes exactly the standard algorithm of its name; when
    ``md5``, ``sha1`` and ``sha256`` all are, a stream may have the three computed in one
    pass (``native_triple``) instead of by the plugin's objects.
    """

    name: str
    version: str = "0"
    standard: bool = False

    @abstractmethod
    def new(self) -> HashObject:
        """A fresh digest object."""


TRIPLE = ("md5", "sha1", "sha256")
NATIVE_DIGESTS_ENV = "EXAMKIT_NATIVE_DIGESTS"  # "0": hashlib for every digest


def _check_messages() -> Iterable[bytes]:
    """Messages the triple digest is checked on: every length to 130 (each padding case of
    a 64-byte block), then a longer one, fed whole with the GIL released."""
    pattern = bytes((i * 167 + 13) & 0xFF for i in range(256)) * 4
    for n in range(131):
        yield pattern[n : 2 * n]
    yield pattern * 70  # 71,680 bytes


_triple: tuple[Any, str] | None = None


def native_triple() -> tuple[Any, str]:
    """The one-pass MD5 + SHA-1 + SHA-256 (``examkit._digest_native.Triple``) if this
    process may use it, else ``None``; and why, for the run's record. It may when it was
    built, the processor has the SHA extensions, ``EXAMKIT_NATIVE_DIGESTS`` is not ``0``,
    and it gave hashlib's three digests for every check message, fed whole and in two
    parts. Decided once per process (a pool's workers inherit the fork server's answer)."""
    global _triple
    if _triple is None:
        _triple = _decide_triple()
    return _triple


def _decide_triple() -> tuple[Any, str]:
    if os.environ.get(NATIVE_DIGESTS_ENV, "").strip() == "0":
        return None, f"{NATIVE_DIGESTS_ENV}=0"
    try:
        from . import _digest_native
    except ImportError:
        return None, "examkit._digest_native is not built"
    if not _digest_native.supported():
        return None, "this processor lacks the SHA extensions"
    import hashlib

    checked = 0
    for message in _check_messages():
        want = tuple(hashlib.new(name, message).hexdigest() for name in TRIPLE)
        whole, parts = _digest_native.Triple(), _digest_native.Triple()
        whole.update(message)
        parts.update(message[: len(message) // 3])
        parts.update(memoryview(message)[len(message) // 3 :])
        if whole.hexdigests() != want or parts.hexdigests() != want:
            return None, f"its digests differed from hashlib's for a {len(message)}-byte message"
        checked += 1
    return _digest_native.Triple, f"gave hashlib's digests for all {checked} check messages"


def digests_used() -> str:
    """How this process computes MD5, SHA-1 and SHA-256, for the run's record."""
    triple, why = native_triple()
    if triple is not None:
        return f"md5, sha1 and sha256 in one pass (examkit._digest_native, SHA extensions; {why})"
    return f"hashlib (OpenSSL) for each digest ({why})"


PARALLEL_MIN = 256 << 10  # chunks this large are hashed by every digest at once, in threads

# glibc hands out allocations of 128 KiB and more as fresh pages mapped for each one (its
# threshold rises only after such a block is freed, and the top of the heap is trimmed
# back), so each chunk read into a new bytes object page-faulted its pages in anew: ~300
# faults a 2 MB file, 1,024 a 4 MiB chunk (86,000 faults and 0.4 s of system time per
# 0.63 GB of 2 MB photos, measured). With these, a worker's chunks reuse its heap; at
# most TRIM_THRESHOLD of free heap is kept, and blocks above MMAP_THRESHOLD are still
# mapped and returned on free (a decoded image, say), so memory stays bounded.
MMAP_THRESHOLD = 2 * CHUNK_SIZE
TRIM_THRESHOLD = 32 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt() parameters
_heap_kept = False


# Units of many streams that read this much leave holes in the heap (chunks of every
# size, freed in any order) that glibc keeps: only the top of the heap is trimmed. A
# worker's free heap grew by ~10-30 MiB over a scan, counted in its memory until it ends.
RELEASE_AFTER = 16 << 20
RELEASE_EVERY = 1.0  # seconds: a trim costs ~0.7 ms, and the pages it frees fault in again
_malloc_trim: Any = None
_released = 0.0


def release_free_heap(bytes_read: int) -> None:
    """After a unit of several streams that read ``bytes_read`` bytes: give the heap's free
    pages back to the system (glibc's ``malloc_trim``) if it read ``RELEASE_AFTER`` or more,
    at most every ``RELEASE_EVERY`` seconds."""
    global _released
    now = time.monotonic()
    if bytes_read < RELEASE_AFTER or now - _released < RELEASE_EVERY:
        return
    _released = now
    trim_heap()


def trim_heap() -> None:
    """Give the heap's free pages back to the system now (glibc's ``malloc_trim``)."""
    global _malloc_trim
    if _malloc_trim is None:
        _malloc_trim = _libc_function("malloc_trim", "c_size_t") or False
    if _malloc_trim:
        _malloc_trim(0)


def _libc_function(name: str, *argtypes: str) -> Any:
    """The C library's function ``name`` taking ``argtypes`` (ctypes' type names) and
    returning an int, or None when it has none (not glibc)."""
    try:
        import ctypes

        function = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = [getattr(ctypes, t) for t in argtypes]
    function.restype = ctypes.c_int
    return function


def keep_chunk_pages() -> bool:
    """In a process that reads streams: let freed chunks' memory be reused by the next
    ones (glibc's ``mallopt``); once per process, inherited by processes it forks.
    Returns whether the C library took the settings (not glibc: nothing changes)."""
    global _heap_kept
    if _heap_kept:
        return True
    mallopt = _libc_function("mallopt", "c_int", "c_int")
    if mallopt is None:
        return False
    _heap_kept = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return _heap_kept


# Large chunks a stream's reader may be ahead of its slowest digest. Each digest runs in
# a lane of its own and goes at its own pace: with one chunk at a time for all of them, a
# big file's faster digests waited for its slowest after every chunk, and its slowest
# then ran alone at the end of a scan (bench image, 8 interleaved pairs: 5.07-5.41 ->
# 4.66-5.13 s, idle core-seconds 0.84-1.12 -> 0.59-0.77).
AHEAD = 4


class _Lane:
    """A thread that runs one digest's updates, in the order given (each digest of a stream
    always goes to the same lane)."""

    def __init__(self, name: str) -> None:
        self.queue: queue.SimpleQueue[tuple[Any, bytes, _Chunk] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()
        self.tid = self.thread.native_id or 0  # set once the thread runs (before start returns)

    def _run(self) -> None:
        while (job := self.queue.get()) is not None:
            obj, chunk, done = job
            try:
                obj.update(chunk)
            except BaseException as exc:  # handed to the stream's reader
                done.error = exc
            done.release()


class _Chunk:
    """A large chunk being hashed by every lane: released once per digest."""

    def __init__(self, count: int) -> None:
        self.left = count
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()

    def release(self) -> None:
        with self._lock:
            self.left -= 1
            if self.left == 0:
                self._done.set()

    def wait(self) -> None:
        self._done.wait()
        if self.error is not None:
            raise self.error


class _LaneSet(list[_Lane]):
    """The lanes of one reading thread; stopped when that thread's storage goes."""

    def __init__(self) -> None:
        super().__init__()
        self.pid = os.getpid()

    def __del__(self) -> None:
        for lane in self:
            lane.queue.put(None)


_local = threading.local()


def _lanes_for(count: int) -> list[_Lane]:
    """The calling thread's lanes (a Dask worker's threads each hash streams of their own;
    a forked process has none of its parent's threads)."""
    lanes: _LaneSet | None = getattr(_local, "lanes", None)
    if lanes is None or lanes.pid != os.getpid():
        lanes = _local.lanes = _LaneSet()
    while len(lanes) < count:
        lanes.append(_Lane(f"examkit-digest-{len(lanes)}"))
    return lanes[:count]


class StreamDigest:
    """Feeds each chunk to every hasher once; keeps the first bytes for typing.

    MD5, SHA-1 and SHA-256 are one object when ``native_triple`` allows it (one pass over
    each chunk). Large chunks go to every digest object at the same time, each in a thread
    of its own (a lane; hashlib and the one pass release the GIL), and the reader goes on
    reading while they run, up to ``AHEAD`` chunks ahead of the slowest: one big file is
    then bound by its slowest digest, not by the sum of all of them. Each digest still
    sees the chunks one after another, in order.
    """

    def __init__(self, hashers: Sequence[Hasher]) -> None:
        key = (tuple(hashers), native_triple()[0])
        try:
            triple, others, self._names, self._triple_only = _plan(*key)
        except TypeError:  # a plugin's hasher that cannot be a key: worked out each time
            triple, others, self._names, self._triple_only = _plan.__wrapped__(*key)
        self._objects: list[tuple[str | tuple[str, ...], Any]] = (
            [(TRIPLE, triple())] if triple is not None else []
        )
        self._objects += [(h.name, h.new()) for h in others]
        self.bytes = 0
        self._head: bytes | bytearray = b""  # the first HEAD_SIZE bytes, once had
        self._pending: collections.deque[_Chunk] = collections.deque()

    def update(self, chunk: bytes) -> None:
        # one digest object (the triple) goes to a lane from a stream's second large chunk:
        # the reader then reads on while it hashes, and a one-chunk file has no hand-over
        if len(chunk) >= PARALLEL_MIN and (len(self._objects) > 1 or self.bytes):
            while len(self._pending) >= AHEAD:
                self._pending.popleft().wait()
            done = _Chunk(len(self._objects))
            lanes = _lanes_for(len(self._objects))
            placement.keep_off(lane.tid for lane in lanes)
            for lane, (_, obj) in zip(lanes, self._objects, strict=True):
                lane.queue.put((obj, chunk, done))
            self._pending.append(done)
        else:
            if self._pending:
                self._wait()
            for _, obj in self._objects:
                obj.update(chunk)
        if len(self._head) < HEAD_SIZE:
            if not self._head:  # most streams: the first chunk holds the whole head
                self._head = chunk[:HEAD_SIZE]
            else:
                self._head = bytearray(self._head) + chunk[: HEAD_SIZE - len(self._head)]
        self.bytes += len(chunk)

    def _wait(self) -> None:
        while self._pending:
            self._pending.popleft().wait()

    @property
    def head(self) -> bytes:
        if type(self._head) is not bytes:
            self._head = bytes(self._head)
        return self._head

    def hexdigests(self) -> dict[str, str]:
        self._wait()
        placement.release()
        if self._triple_only:
            return dict(zip(TRIPLE, self._objects[0][1].hexdigests(), strict=True))
        out: dict[str, str] = {}
        for name, obj in self._objects:
            if isinstance(name, tuple):
                out.update(zip(name, obj.hexdigests(), strict=True))
            else:
                out[name] = obj.hexdigest().lower()
        return {name: out[name] for name in self._names}


@functools.lru_cache(maxsize=16)
def _plan(
    hashers: tuple[Hasher, ...], available: Any
) -> tuple[Any, tuple[Hasher, ...], tuple[str, ...], bool]:
    """How a stream is hashed with ``hashers`` (worked out once per set, not per stream):
    the one-pass triple (``available``, what ``native_triple`` allows) if md5, sha1 and
    sha256 all are standard (else ``None``), the hashers whose own objects are still
    needed, every hasher's name (the digests' order), and whether the one pass alone gives
    them all, in that order (``hexdigests``' short way)."""
    standard = {h.name for h in hashers if h.standard}
    triple = available if available is not None and standard.issuperset(TRIPLE) else None
    others = tuple(h for h in hashers if triple is None or h.name not in TRIPLE)
    names = tuple(h.name for h in hashers)
    return triple, others, names, triple is not None and not others and names == TRIPLE


def hash_stream(chunks: Iterable[bytes], hashers: Sequence[Hasher]) -> StreamDigest:
    """Hash an iterable of chunks with every hasher in a single pass."""
    digest = StreamDigest(hashers)
    for chunk in chunks:
        digest.update(chunk)
    return digest
