"""Perceptual hashing benchmark: speed, fidelity of the reduced decode, robustness, scale.

    make bench-perceptual        # all parts below (a few minutes on 2 cores)

1. Images per second per core (PDQ + pHash + dHash, one reduced decode each), for
   1600x1200 and 640x480 JPEGs, against a full-resolution decode.
2. Fidelity: PDQ of the reduced decode against Meta's reference code (``pdqhash``) on
   the full-resolution pixels, over large JPEGs (target: within 10 bits for >= 95%).
3. Robustness: edited copies of seeded synthetic photos (resized to 50%, JPEG quality
   50, grayscale, cropped 1% and 2%): PDQ and pHash distances and match rates at the
   default thresholds; false positives over at least 10,000 unrelated pairs.
4. Scale: a 1,000,000-entry PDQ list imported with ``examkit hashset import``, then
   10,000 image hashes matched against it through the compiled index (target < 10 s).
5. Scan: an ext4 image of photos scanned with and without ``--no-perceptual``.

Every image is generated (``tests/fixtures/synthetic_images.py``): harmless patterns.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import EXAMKIT, measure_tree  # noqa: E402

from examkit.hashsets import Library  # noqa: E402
from examkit.matching import NearOptions  # noqa: E402
from examkit.perceptual import decode, hamming_hex, hash_image  # noqa: E402
from examkit.plugins import registry  # noqa: E402
from tests.fixtures.synthetic_images import EDITS, encode, photo, reopen  # noqa: E402

HASHERS = registry().image_hashers


def reference_pdq(data: bytes) -> str:
    import pdqhash

    vector, _quality = pdqhash.compute(np.asarray(reopen(data).convert("RGB"), np.uint8))
    return np.packbits(np.asarray(vector, np.uint8)).tobytes().hex()


def speed(count: int) -> None:
    print("\n1. perceptual hashing speed (one process, one core; PDQ + pHash + dHash)")
    for width, height in ((1600, 1200), (640, 480)):
        images = [encode(photo(100 + i, width, height), "JPEG", quality=88) for i in range(count)]
        for label, reduce in (("reduced decode", True), ("full decode", False)):
            started = time.perf_counter()
            for data in images:
                if reduce:
                    result = hash_image(data, "image/jpeg", HASHERS)
                    assert result.status == "ok"
                else:
                    image, _w, _h = decode(data, reduce=False)
                    for hasher in HASHERS:
                        hasher.compute(image)
            rate = count / (time.perf_counter() - started)
            print(f"  {width}x{height} JPEG, {label:15} {rate:7.1f} images/s/core")


def fidelity(count: int) -> None:
    print(f"\n2. reduced decode vs reference PDQ at full resolution ({count} JPEGs, 1600-2400 px)")
    distances = []
    for i in range(count):
        width = 1600 + 200 * (i % 5)
        data = encode(photo(3000 + i, width, width * 3 // 4), "JPEG", quality=85 + i % 10)
        ours = hash_image(data, "image/jpeg", HASHERS).hashes["pdq"][0]
        distances.append(hamming_hex(ours, reference_pdq(data)))
    within = sum(d <= 10 for d in distances)
    print(f"  within 10 bits: {within}/{count} = {within / count:.1%} (target >= 95%);"
          f" mean {statistics.mean(distances):.1f}, max {max(distances)} bits")  # fmt: skip


def robustness(count: int, unrelated: int) -> None:
    near = NearOptions()
    print(f"\n3. robustness: {count} synthetic photos (640x480, JPEG q90) and their edits;"
          f" thresholds PDQ {near.pdq_threshold}, pHash {near.phash_threshold}")  # fmt: skip
    rows: dict[str, list[tuple[int, int, int]]] = {name: [] for name in EDITS}
    originals = []
    for i in range(count):
        data = encode(photo(7000 + i), "JPEG", quality=90)
        base = hash_image(data, "image/jpeg", HASHERS)
        originals.append(base.hashes)
        for name, (edit, _must) in EDITS.items():
            copy = hash_image(encode(edit(reopen(data)), "PNG"), "image/png", HASHERS)
            rows[name].append((
                hamming_hex(base.hashes["pdq"][0], copy.hashes["pdq"][0]),
                hamming_hex(base.hashes["phash"][0], copy.hashes["phash"][0]),
                copy.hashes["pdq"][1] or 0,
            ))  # fmt: skip
    print(f"  {'edit':18} {'PDQ <=thr':>10} {'+quality':>9} {'mean':>6} {'max':>5}"
          f" {'pHash match':>12} {'mean':>6} {'max':>5}  either")  # fmt: skip
    for name, values in rows.items():
        pdq = [v[0] for v in values]
        ph = [v[1] for v in values]
        pdq_ok = sum(d <= near.pdq_threshold and q >= near.pdq_min_quality
                     for d, _p, q in values)  # fmt: skip
        ph_ok = sum(p <= near.phash_threshold for p in ph)
        close = sum(d <= near.pdq_threshold for d in pdq)  # distance alone, before the gate
        either = sum((d <= near.pdq_threshold and q >= near.pdq_min_quality)
                     or p <= near.phash_threshold for d, p, q in values)  # fmt: skip
        print(f"  {name:18} {close / count:10.0%} {pdq_ok / count:9.0%}"
              f" {statistics.mean(pdq):6.1f} {max(pdq):5d}"
              f" {ph_ok / count:12.0%} {statistics.mean(ph):6.1f} {max(ph):5d}"
              f"  {either / count:.0%}")  # fmt: skip
    extra = [hash_image(encode(photo(9000 + i), "JPEG", quality=90), "image/jpeg", HASHERS).hashes
             for i in range(max(0, unrelated - count))]  # fmt: skip
    pool = originals + extra
    pairs = list(itertools.combinations(pool, 2))
    pdq_fp = sum(hamming_hex(a["pdq"][0], b["pdq"][0]) <= near.pdq_threshold for a, b in pairs)
    ph_fp = sum(hamming_hex(a["phash"][0], b["phash"][0]) <= near.phash_threshold
                for a, b in pairs)  # fmt: skip
    closest = min(hamming_hex(a["pdq"][0], b["pdq"][0]) for a, b in pairs)
    print(f"  unrelated pairs: {len(pairs):,}; PDQ false positives {pdq_fp}, pHash false"
          f" positives {ph_fp}; closest unrelated PDQ pair {closest} bits")  # fmt: skip


def scale(work: Path, entries: int, queries: int) -> None:
    print(f"\n4. scale: {entries:,}-entry PDQ list, {queries:,} image hashes")
    rng = np.random.default_rng(2026)
    refs = rng.integers(0, 256, (entries, 32), dtype=np.uint8)
    source = work / "big.pdq"
    with open(source, "w") as fh:
        for start in range(0, entries, 100_000):
            block = refs[start : start + 100_000]
            fh.write("".join(f"{row.tobytes().hex()}\tref{start + i}\n"
                             for i, row in enumerate(block)))  # fmt: skip
    env = dict(os.environ, EXAMKIT_HASHSETS=str(work / "library"))
    wall, total, _largest = measure_tree([EXAMKIT, "hashset", "import", str(source), "--name",
                                          "big", "--kind", "known-bad"], env)  # fmt: skip
    print(f"  examkit hashset import: {wall:.1f} s, peak PSS {total / 1024:.0f} MiB")
    planted = rng.choice(entries, queries // 10, replace=False)
    q = rng.integers(0, 256, (queries, 32), dtype=np.uint8)
    q[: len(planted)] = refs[planted]
    flips = rng.integers(0, 256, (len(planted), 20))  # up to 20 flipped bits each
    for row, positions in enumerate(flips):
        for bit in positions:
            q[row, bit // 8] ^= np.uint8(1 << (bit % 8))
    started = time.perf_counter()
    index = Library(work / "library").open("big")
    rows, found_entries, _distances = index.near("pdq", q, NearOptions().pdq_threshold)
    seconds = time.perf_counter() - started
    hits = {(int(r), int(e)) for r, e in zip(rows.tolist(), found_entries.tolist(), strict=True)}
    all_found = all((i, int(e)) in hits for i, e in enumerate(planted.tolist()))
    print(f"  {queries:,} hashes matched in {seconds:.2f} s (target < 10 s); {len(hits):,} pairs;"
          f" every planted near copy found: {all_found}")  # fmt: skip


def scan_times(work: Path, count: int) -> None:
    print(f"\n5. scan of an ext4 image holding {count} photos (640x480 JPEG), 2 workers")
    src = work / "photos"
    src.mkdir()
    for i in range(count):
        (src / f"IMG_{i:05d}.jpg").write_bytes(encode(photo(20000 + i), "JPEG", quality=88))
    image = work / "photos.raw"
    size = sum(p.stat().st_size for p in src.iterdir())
    with open(image, "wb") as fh:
        fh.truncate(max(64 << 20, size * 2))
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(src), str(image)], check=True)
    env = dict(os.environ, EXAMKIT_HASHSETS=str(work / "empty-library"))
    results = {}
    for label, extra in (("with perceptual hashing", []), ("--no-perceptual", ["--no-perceptual"])):
        case = work / f"case-{len(extra)}.sqlite"
        wall, total, _ = measure_tree([EXAMKIT, "scan", str(image), "--case", str(case),
                                       "--no-verify", *extra], env)  # fmt: skip
        results[label] = wall
        print(f"  examkit scan {label:26} {wall:6.1f} s  peak PSS {total / 1024:.0f} MiB")
    extra_s = results["with perceptual hashing"] - results["--no-perceptual"]
    print(f"  perceptual step: +{extra_s:.1f} s, {count / max(extra_s, 1e-9) / 2:.0f} images/s"
          f" per core on top of the crypto hashes")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed-images", type=int, default=30)
    parser.add_argument("--fidelity-images", type=int, default=100)
    parser.add_argument("--robustness-images", type=int, default=100)
    parser.add_argument("--unrelated", type=int, default=160, help="images for the FP pairs")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--scan-images", type=int, default=1000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="examkit-bench-perceptual-"))
    try:
        print(f"{len(os.sched_getaffinity(0))} cores")
        speed(args.speed_images)
        fidelity(args.fidelity_images)
        robustness(args.robustness_images, args.unrelated)
        scale(work, args.entries, args.queries)
        if shutil.which("mkfs.ext4"):
            scan_times(work, args.scan_images)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
