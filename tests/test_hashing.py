"""One read, many digests: the digests of a chunked stream equal hashlib's of its bytes."""

from __future__ import annotations

import hashlib
import random

from examkit.hashing import CHUNK_SIZE, HEAD_SIZE, PARALLEL_MIN, hash_stream
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
