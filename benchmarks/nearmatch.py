"""Near-match benchmark: Hamming search of perceptual hashes (examkit.nearmatch), in process.

    python benchmarks/nearmatch.py              # 1,000,000 PDQ-sized references, 10,000 queries
    python benchmarks/nearmatch.py --mapped     # search the index saved and memory-mapped

Random 256-bit references (seeded); among the queries, near copies (5-25 flipped bits) of
distinct references, the rest random. Prints build and search times, the pairs found,
whether every planted pair was found with its distance, and peak RSS. Target: 10,000
queries against 1,000,000 references at threshold 31 in under 10 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from examkit import nearmatch


def rss_mib() -> float:
    """Peak RSS of this process so far (MiB; ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_queries(refs: np.ndarray, n: int, planted: int, low: int, high: int, seed: int
                 ) -> tuple[np.ndarray, dict[int, tuple[int, int]]]:  # fmt: skip
    """``n`` random queries, ``planted`` of them near copies of distinct references with
    ``low..high`` flipped bits; returns them and {query row: (reference row, flips)}."""
    rng = np.random.default_rng(seed)
    nbytes = refs.shape[1]
    queries = rng.integers(0, 256, (n, nbytes), dtype=np.uint8)
    rows = rng.choice(n, planted, replace=False)
    sources = rng.choice(len(refs), planted, replace=False)
    truth = {}
    for row, source in zip(rows.tolist(), sources.tolist(), strict=True):
        flips = int(rng.integers(low, high + 1))
        bits = np.unpackbits(refs[source])
        bits[rng.choice(8 * nbytes, flips, replace=False)] ^= 1
        queries[row] = np.packbits(bits)
        truth[row] = (source, flips)
    return queries, truth


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refs", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--planted", type=int, default=1_000)
    parser.add_argument("--bits", type=int, default=256)
    parser.add_argument("--threshold", type=int, default=31)
    parser.add_argument("--flips", type=int, nargs=2, default=(5, 25), metavar=("LOW", "HIGH"))
    parser.add_argument("--block", type=int, help="queries per block (default: automatic)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--mapped", action="store_true", help="save, then search the mapped copy")
    args = parser.parse_args()

    nbytes = args.bits // 8
    rng = np.random.default_rng(args.seed)
    refs = rng.integers(0, 256, (args.refs, nbytes), dtype=np.uint8)
    queries, truth = make_queries(refs, args.queries, args.planted, *args.flips, args.seed + 1)
    chunks, radius = nearmatch.chunk_plan(args.bits, args.threshold)
    print(f"{args.refs:,} references and {args.queries:,} queries of {args.bits} bits "
          f"({args.planted:,} planted, {args.flips[0]}-{args.flips[1]} bits flipped); "
          f"threshold {args.threshold}: {chunks} chunks, radius {radius}; "
          f"{os.cpu_count()} cores")  # fmt: skip
    print(f"  data generated                 peak RSS {rss_mib():7.0f} MiB")

    t = time.perf_counter()
    index = nearmatch.NearIndex.build(refs)
    build = time.perf_counter() - t
    print(f"  build          {build:7.2f} s      peak RSS {rss_mib():7.0f} MiB")

    work = None
    if args.mapped:
        work = Path(tempfile.mkdtemp(prefix="examkit-bench-"))
        nearmatch.save(index, work, "pdq")
        del index
        loaded = nearmatch.load(work, "pdq", nbytes)
        assert loaded is not None
        index = loaded
        print(f"  saved and mapped ({sum(p.stat().st_size for p in work.iterdir()) / 1e6:.0f} MB)")
    try:
        t = time.perf_counter()
        query, reference, distance = index.search(queries, args.threshold, block=args.block)
        search = time.perf_counter() - t
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"  search         {search:7.2f} s      peak RSS {rss_mib():7.0f} MiB   target < 10 s")
    print(f"  {args.queries / search:,.0f} queries/s; {len(query):,} pairs found")

    found = dict.fromkeys(zip(query.tolist(), reference.tolist(), strict=True), -1)
    for q, r, d in zip(query.tolist(), reference.tolist(), distance.tolist(), strict=True):
        found[(q, r)] = d
    expected = {(q, r): f for q, (r, f) in truth.items() if f <= args.threshold}
    missing = [pair for pair, flips in expected.items() if found.get(pair) != flips]
    exact = nearmatch.hamming(queries[query], refs[reference]).tolist() == distance.tolist()
    print(f"  planted pairs within the threshold: {len(expected):,}, "
          f"{'all found' if not missing else f'{len(missing):,} MISSING'}; "
          f"distances {'exact' if exact else 'WRONG'}")  # fmt: skip
    return 0 if not missing and exact else 1


if __name__ == "__main__":
    sys.exit(main())
