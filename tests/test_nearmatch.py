"""Near-match search (examkit.nearmatch) against a brute-force oracle: every pair within the
threshold, none beyond it, each once, in order; edge cases; the saved, mapped index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from examkit import nearmatch
from examkit.nearmatch import NearIndex, chunk_plan, hamming

POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)  # not bitwise_count


def brute_force(queries: np.ndarray, refs: np.ndarray, threshold: int) -> np.ndarray:
    """Full distance matrix by byte table; the pairs within the threshold as (q, r, d) rows,
    sorted by (q, d, r)."""
    if not len(queries) or not len(refs):
        return np.zeros((0, 3), dtype=np.int64)
    matrix = POPCOUNT[queries[:, None, :] ^ refs[None, :, :]].sum(axis=2, dtype=np.int64)
    q, r = np.nonzero(matrix <= threshold)
    d = matrix[q, r]
    order = np.lexsort((r, d, q))
    return np.stack([q[order], r[order], d[order]], axis=1)


def found(index: NearIndex, queries: np.ndarray, threshold: int, **kw: int) -> np.ndarray:
    q, r, d = index.search(queries, threshold, **kw)
    assert q.dtype == r.dtype == d.dtype == np.int64
    return np.stack([q, r, d], axis=1)


def flipped(rows: np.ndarray, flips: list[int], rng: np.random.Generator) -> np.ndarray:
    """Copies of ``rows`` with ``flips[i]`` distinct random bits of row i inverted."""
    bits = np.unpackbits(rows, axis=1)
    for i, k in enumerate(flips):
        bits[i, rng.choice(bits.shape[1], k, replace=False)] ^= 1
    return np.packbits(bits, axis=1)


def workload(bits: int, threshold: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """2,000 random references (some duplicated) and 300 queries: 250 near copies of
    references with 0..threshold+4 flipped bits, 50 unrelated random vectors."""
    rng = np.random.default_rng(seed)
    refs = rng.integers(0, 256, (2000, bits // 8), dtype=np.uint8)
    refs[1500:1520] = refs[:20]  # duplicate references: each copy is its own pair
    flips = [i % (threshold + 5) for i in range(250)]
    near = flipped(refs[rng.integers(0, 2000, 250)], flips, rng)
    unrelated = rng.integers(0, 256, (50, bits // 8), dtype=np.uint8)
    queries = np.concatenate([near, unrelated])
    return refs, queries[rng.permutation(len(queries))]


@pytest.mark.parametrize(("bits", "threshold"), [(64, 8), (256, 31), (256, 40)])
def test_matches_brute_force(bits: int, threshold: int) -> None:
    refs, queries = workload(bits, threshold, seed=bits + threshold)
    expected = brute_force(queries, refs, threshold)
    index = NearIndex.build(refs)
    got = found(index, queries, threshold)
    np.testing.assert_array_equal(got, expected)
    assert (expected[:, 2] == threshold).any()  # pairs exactly at the threshold are found
    beyond = brute_force(queries, refs, threshold + 1)
    assert (beyond[:, 2] == threshold + 1).any()  # ... and those one bit beyond are not
    assert len(np.unique(got[:, :2], axis=0)) == len(got)  # each pair once
    np.testing.assert_array_equal(got[:, 2], hamming(queries[got[:, 0]], refs[got[:, 1]]))


def test_blocks_and_passes_do_not_change_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    refs, queries = workload(256, 31, seed=5)
    refs[100:400] = refs[99]  # one run (300 rows) larger than a pass: a pass of its own
    queries[:3] = refs[99]
    expected = brute_force(queries, refs, 31)
    index = NearIndex.build(refs)
    monkeypatch.setattr(nearmatch, "PASS_BYTES", 64 * 32)  # 64 candidates per pass
    for block in (1, 7, 1000):
        np.testing.assert_array_equal(found(index, queries, 31, block=block), expected)


@pytest.mark.parametrize(("bits", "threshold"), [(16, 3), (48, 5), (64, 0), (64, 64)])
def test_other_widths_and_extreme_thresholds(bits: int, threshold: int) -> None:
    rng = np.random.default_rng(bits * 100 + threshold)
    refs = rng.integers(0, 256, (300, bits // 8), dtype=np.uint8)
    queries = np.concatenate(
        [refs[:20], flipped(refs[20:60], [1, 2, 3, 4] * 10, rng), refs[60:61] ^ 0xFF]
    )
    got = found(NearIndex.build(refs), queries, threshold)
    np.testing.assert_array_equal(got, brute_force(queries, refs, threshold))
    if threshold >= bits:  # every pair
        assert len(got) == len(queries) * len(refs)


def test_empty_index_and_empty_queries() -> None:
    rng = np.random.default_rng(3)
    empty = NearIndex.build(np.zeros((0, 32), dtype=np.uint8))
    assert len(empty) == 0
    assert empty.offsets.shape == (16, 65537) and not empty.offsets.any()
    queries = rng.integers(0, 256, (5, 32), dtype=np.uint8)
    assert found(empty, queries, 31).shape == (0, 3)
    index = NearIndex.build(rng.integers(0, 256, (50, 32), dtype=np.uint8))
    assert found(index, np.zeros((0, 32), dtype=np.uint8), 31).shape == (0, 3)


def test_duplicates_and_exact_copies() -> None:
    rng = np.random.default_rng(4)
    refs = rng.integers(0, 256, (40, 32), dtype=np.uint8)
    refs[[5, 17, 33]] = refs[2]
    q, r, d = NearIndex.build(refs).search(refs[[2, 9]], 0)
    assert q.tolist() == [0, 0, 0, 0, 1]
    assert r.tolist() == [2, 5, 17, 33, 9]
    assert d.tolist() == [0] * 5


def test_results_are_sorted_by_query_distance_reference() -> None:
    rng = np.random.default_rng(6)
    base = rng.integers(0, 256, (1, 32), dtype=np.uint8)
    refs = np.concatenate([flipped(np.repeat(base, 6, axis=0), [9, 3, 9, 0, 3, 20], rng), base])
    q, r, d = NearIndex.build(refs).search(np.repeat(base, 2, axis=0), 31)
    assert q.tolist() == [0] * 7 + [1] * 7
    assert d.tolist()[:7] == [0, 0, 3, 3, 9, 9, 20]
    assert r.tolist()[:7] == [3, 6, 1, 4, 0, 2, 5]


def test_chunk_layout_is_big_endian_16_bit_slices_of_the_bytes() -> None:
    digests = ["0001" + "ff" * 30, "0100" + "00" * 30, "0001" + "00" * 30]
    vectors = np.frombuffer(b"".join(bytes.fromhex(h) for h in digests), dtype=np.uint8)
    index = NearIndex.build(vectors.reshape(3, 32))
    assert index.positions.dtype == np.uint32 and index.positions.shape == (16, 3)
    assert index.positions[0].tolist() == [0, 2, 1]  # values 0x0001, 0x0001, 0x0100: stable
    offsets = index.offsets[0]
    assert (offsets[1], offsets[2], offsets[0x100], offsets[0x101]) == (0, 2, 2, 3)
    assert index.positions[1].tolist() == [1, 2, 0]  # 0xffff sorts last
    assert offsets[-1] == 3


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    refs, queries = workload(256, 31, seed=8)
    index = NearIndex.build(refs)
    assert nearmatch.load(tmp_path, "pdq", 32) is None
    nearmatch.save(index, tmp_path, "pdq")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["pdq.mih_offsets", "pdq.mih_positions", "pdq.vectors"]
    assert (tmp_path / "pdq.vectors").read_bytes() == refs.tobytes()
    loaded = nearmatch.load(tmp_path, "pdq", 32)
    assert loaded is not None and len(loaded) == len(refs)
    assert isinstance(loaded.positions, np.memmap) and not loaded.positions.flags.writeable
    np.testing.assert_array_equal(found(loaded, queries, 31), found(index, queries, 31))
    (tmp_path / "pdq.mih_positions").unlink()
    assert nearmatch.load(tmp_path, "pdq", 32) is None


def test_save_and_load_an_empty_index(tmp_path: Path) -> None:
    nearmatch.save(NearIndex.build(np.zeros((0, 8), dtype=np.uint8)), tmp_path, "phash")
    loaded = nearmatch.load(tmp_path, "phash", 8)
    assert loaded is not None and len(loaded) == 0
    assert found(loaded, np.ones((2, 8), dtype=np.uint8), 8).shape == (0, 3)


def test_chunk_plan() -> None:
    assert chunk_plan(256, 31) == (16, 1)
    assert chunk_plan(64, 8) == (4, 2)
    assert chunk_plan(256, 0) == (16, 0)
    assert chunk_plan(64, 64) == (4, 16)
    for bits, threshold in ((0, 1), (72 + 4, 1), (256, -1)):
        with pytest.raises(ValueError):
            chunk_plan(bits, threshold)


def test_bad_input_is_refused() -> None:
    index = NearIndex.build(np.zeros((3, 8), dtype=np.uint8))
    with pytest.raises(ValueError):
        index.search(np.zeros((1, 32), dtype=np.uint8), 8)  # wrong width
    with pytest.raises(ValueError):
        index.search(np.zeros((1, 8), dtype=np.int64), 8)  # not bytes
    with pytest.raises(ValueError):
        NearIndex.build(np.zeros((3, 7), dtype=np.uint8))  # not a multiple of 16 bits
    with pytest.raises(ValueError):
        index.search(np.zeros((1, 8), dtype=np.uint8), -1)


def test_hamming() -> None:
    rng = np.random.default_rng(9)
    for nbytes in (2, 6, 8, 32):
        a = rng.integers(0, 256, (50, nbytes), dtype=np.uint8)
        b = rng.integers(0, 256, (50, nbytes), dtype=np.uint8)
        expected = POPCOUNT[a ^ b].sum(axis=1, dtype=np.int64)
        np.testing.assert_array_equal(hamming(a, b), expected)
    assert hamming(np.zeros((1, 32), np.uint8), np.full((1, 32), 255, np.uint8)).tolist() == [256]
