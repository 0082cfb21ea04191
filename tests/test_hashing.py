"""One read, many digests: the digests of a chunked stream equal hashlib's of its bytes."""

from __future__ import annotations

import gc
import hashlib
import random
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from examkit.hashing import (
    AHEAD,
    CHUNK_SIZE,
    HEAD_SIZE,
    PARALLEL_MIN,
    Hasher,
    StreamDigest,
    hash_stream,
)
from examkit.plugins import registry


def test_chunks_of_every_size_give_the_digests_of_the_whole_stream() -> None:
    rng = random.Random(55)
    data = rng.randbytes(2 * CHUNK_SIZE + 12_345)
    # whole chunks (hashed in threads), small ones (hashed inline) and odd sizes, mixed
    sizes = [CHUNK_SIZE, 1, PARALLEL_MIN - 1, PARALLEL_MIN, 7, CHUNK_SIZE // 3]
    chunks, at = [], 0
    for size in sizes * 10:
        if at >= len(data):
            break
        chunks.append(data[at : at + size])
        at += size
    chunks.append(data[at:])
    assert b"".join(chunks) == data
    hashers = [h for h in registry().hashers if h.name in ("md5", "sha1", "sha256")]
    digest = hash_stream(chunks, hashers)
    assert digest.hexdigests() == {
        name: hashlib.new(name, data).hexdigest() for name in ("md5", "sha1", "sha256")
    }
    assert digest.bytes == len(data)
    assert digest.head == data[:HEAD_SIZE]


def _three() -> list[Hasher]:
    return [h for h in registry().hashers if h.name in ("md5", "sha1", "sha256")]


def test_streams_read_at_once_by_several_threads_keep_their_own_digests() -> None:
    """Each digest of a large stream runs in a lane of its own, up to AHEAD chunks behind the
    reader: many chunks, several readers at the same time (a Dask worker's threads)."""
    rng = random.Random(7)
    streams = [[rng.randbytes(PARALLEL_MIN + rng.randrange(3000)) for _ in range(3 * AHEAD)]
               for _ in range(4)]  # fmt: skip
    results: dict[int, dict[str, str]] = {}

    def read(i: int) -> None:
        results[i] = hash_stream(streams[i], _three()).hexdigests()

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(streams))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, chunks in enumerate(streams):
        data = b"".join(chunks)
        assert results[i] == {
            n: hashlib.new(n, data).hexdigest() for n in ("md5", "sha1", "sha256")
        }


class _Failing(Hasher):
    name = "failing"

    def new(self) -> object:  # type: ignore[override]
        class Digest:
            def __init__(self) -> None:
                self.seen = 0

            def update(self, data: bytes) -> None:
                self.seen += 1
                if self.seen == 3:
                    raise OSError("digest failed")

            def hexdigest(self) -> str:
                return "00"

        return Digest()


def test_a_digest_failing_in_its_lane_fails_the_stream() -> None:
    chunks = [bytes(PARALLEL_MIN)] * 3
    with pytest.raises(OSError, match="digest failed"):
        hash_stream(chunks, [*_three(), _Failing()]).hexdigests()


class _Unhashable(Hasher):
    """A plugin's hasher that defines equality and so cannot be a dictionary key."""

    name, standard = "sha512", False
    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Unhashable)

    def new(self) -> Any:
        return hashlib.sha512()


def test_a_hasher_that_cannot_be_a_key_still_hashes() -> None:
    data = random.Random(7).randbytes(3 * PARALLEL_MIN + 5)
    out = hash_stream([data], [*_three(), _Unhashable()]).hexdigests()
    assert out == {name: hashlib.new(name, data).hexdigest()
                   for name in ("md5", "sha1", "sha256", "sha512")}  # fmt: skip


def test_how_a_stream_is_hashed_follows_this_processs_decision(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from examkit import hashing

    hashers = _three()
    if hashing.native_triple()[0] is not None:  # the one pass, where this machine has it
        assert [name for name, _ in StreamDigest(hashers)._objects] == [hashing.TRIPLE]
    monkeypatch.setattr(hashing, "_triple", (None, "switched off for the test"))
    digest = StreamDigest(hashers)  # the same hashers: a plan kept for them is not reused
    assert [name for name, _ in digest._objects] == ["md5", "sha1", "sha256"]
    digest.update(b"abc")
    assert digest.hexdigests()["sha1"] == hashlib.sha1(b"abc").hexdigest()


def _lane_threads() -> int:
    return sum(t.name.startswith("examkit-digest-") for t in threading.enumerate())


def test_a_reading_threads_lanes_end_with_it() -> None:
    before = _lane_threads()
    reader = threading.Thread(target=lambda: hash_stream([bytes(PARALLEL_MIN)] * 2, _three()))
    reader.start()
    reader.join()
    gc.collect()
    deadline = time.monotonic() + 5
    while _lane_threads() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _lane_threads() == before


FAULTS = """
import resource, sys
from examkit.hashing import keep_chunk_pages
if sys.argv[1] == "on":
    assert keep_chunk_pages()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
held = b""
before = faults()
for i in range(64):
    size = 2_000_000 + (i * 370_001) % 2_200_000  # files of 2 to 4.2 MB, each read whole
    data = b"x" * size
    held = data  # one chunk is hashed while the next is read
print(faults() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_chunks_reuse_heap_pages_instead_of_faulting_in_new_ones() -> None:
    """Each chunk a worker reads is a new bytes object; left to glibc's defaults, blocks of
    this size are mapped afresh and every page of every chunk faults in again (0.4 s of
    system time per 0.63 GB of 2 MB photos). keep_chunk_pages() lets them reuse the heap."""

    def faults(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True,
                              text=True, check=True)  # fmt: skip
        return int(done.stdout.strip())

    default, kept = faults("off"), faults("on")
    assert default > 10_000  # ~750 pages a chunk, most of them faulted in anew
    assert kept * 3 < default


HOLES = """
import sys
from examkit import hashing
hashing.keep_chunk_pages()
def private_dirty_kib():
    with open("/proc/self/smaps_rollup") as fh:
        return sum(int(line.split()[1]) for line in fh if line.startswith("Private_Dirty:"))
chunks = [bytearray(b"x" * (1 << 20)) for _ in range(96)]  # a unit's chunks, 1 MiB each
keep = chunks[-1::-8]  # what stays alive (in the heap above the others)
del chunks
held = private_dirty_kib()
hashing.release_free_heap(int(sys.argv[1]))
print(held, private_dirty_kib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_free_heap_is_given_back_after_a_unit_that_read_much() -> None:
    """Freed chunks below a live one stay in the heap (glibc trims only its top), and count
    in the worker's memory until it ends; release_free_heap gives their pages back once a
    unit has read RELEASE_AFTER bytes, and leaves them after a unit that read less."""
    from examkit.hashing import RELEASE_AFTER

    def after(bytes_read: int) -> tuple[int, int]:
        done = subprocess.run([sys.executable, "-c", HOLES, str(bytes_read)],
                              capture_output=True, text=True, check=True)  # fmt: skip
        held, left = map(int, done.stdout.split())
        return held, left

    held, left = after(RELEASE_AFTER)
    assert held - left > 64 << 10  # KiB: most of the 84 freed MiB went back
    held, left = after(RELEASE_AFTER - 1)
    assert abs(held - left) < 4 << 10  # a small unit: nothing is trimmed


def test_free_heap_is_given_back_at_most_every_release_every_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from examkit import hashing

    calls: list[int] = []
    monkeypatch.setattr(hashing, "_malloc_trim", calls.append)
    monkeypatch.setattr(hashing, "_released", 0.0)
    hashing.release_free_heap(hashing.RELEASE_AFTER)  # given back
    hashing.release_free_heap(hashing.RELEASE_AFTER)  # within RELEASE_EVERY: not
    monkeypatch.setattr(hashing, "_released", hashing._released - hashing.RELEASE_EVERY)
    hashing.release_free_heap(hashing.RELEASE_AFTER - 1)  # a unit that read less: not
    hashing.release_free_heap(hashing.RELEASE_AFTER)  # given back
    assert calls == [0, 0]
