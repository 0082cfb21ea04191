"""Memory bound of a whole scan (issue 5: peak under 400 MB whatever the image size).

    make bench-memory               # builds both images (seeded), scans each, prints figures

Two ext4 images built with ``mkfs.ext4 -d`` (real tools, no mount needed):

- **sparse**: a 20 GiB volume holding three multi-GB files (4, 3 and 2 GiB,
  sparse, with 1 MiB of random data every 128 MiB) and a few small files;
- **small**: 100,000 small files (0-4 KiB, half text, half random bytes) in
  100 folders; scanned once with an empty hash-set library and once more against
  a known-good set of 5,000,000 random MD5s with NSRL-like names plus the MD5 of
  every file of the image (every hashed file is a hit: the parent reads every
  hit's record; the count of known-good files must equal the files hashed).

The small files are also timed against ``fiwalk -X`` (three interleaved pairs with the
scan bench-scan compares): a ratio per file rather than per byte.

Each is scanned by ``examkit scan`` as a fresh process; the peak is the total
proportional set size (PSS) of the parent and every worker, sampled every
0.1 s, plus the largest single process. Row counts are checked against
``fls -r``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import EXAMKIT, measure_tree, missing_tool, untyped_cpu_seconds, work_folder

GIB = 1 << 30
LIMIT_MIB = 400
WORDS = ["the", "evidence", "was", "imaged", "and", "hashed", "before", "examination"]


def _sparse_file(path: Path, size: int, rng: random.Random) -> None:
    with open(path, "wb") as fh:
        fh.truncate(size)
        for offset in range(0, size, 128 << 20):
            fh.seek(offset)
            fh.write(rng.randbytes(1 << 20))


def build_sparse(work: Path, seed: int) -> Path:
    image = work / "sparse-20g.raw"
    if image.exists():
        return image
    rng = random.Random(seed)
    src = work / "sparse-src"
    shutil.rmtree(src, ignore_errors=True)
    (src / "videos").mkdir(parents=True)
    for name, size in (("a.bin", 4 * GIB), ("b.bin", 3 * GIB), ("c.bin", 2 * GIB)):
        _sparse_file(src / "videos" / name, size, rng)
    for i in range(20):
        (src / f"note{i:02d}.txt").write_text(" ".join(rng.choices(WORDS, k=200)))
    with open(image, "wb") as fh:
        fh.truncate(20 * GIB)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(src), str(image)], check=True)
    shutil.rmtree(src)
    return image


def build_small(work: Path, seed: int, count: int) -> Path:
    image = work / f"small-{count}.raw"
    if image.exists():
        return image
    rng = random.Random(seed)
    src = work / "small-src"
    shutil.rmtree(src, ignore_errors=True)
    folders = [src / f"d{i:03d}" for i in range(100)]
    for folder in folders:
        folder.mkdir(parents=True)
    for i in range(count):
        size = rng.randrange(0, 4097)
        if i % 2:
            data = rng.randbytes(size)
        else:
            data = " ".join(rng.choices(WORDS, k=size // 6 + 1)).encode()[:size]
        (folders[i % 100] / f"f{i:06d}.{'bin' if i % 2 else 'txt'}").write_bytes(data)
    with open(image, "wb") as fh:
        fh.truncate(max(GIB, count * 12 * 1024))
    subprocess.run(["mkfs.ext4", "-q", "-F", "-b", "4096", "-N", str(count + 2000), "-d",
                    str(src), str(image)], check=True)  # fmt: skip
    shutil.rmtree(src)
    return image


HITS_RANDOM = 5_000_000  # random entries of the many-hits set


def build_hits_library(work: Path, case: Path, env: dict[str, str], seed: int) -> int:
    """A library (``work/hits-library``) holding one known-good md5sum set: HITS_RANDOM
    random digests with long names, plus the MD5 of every file the case hashed. Returns
    how many of the case's files have one of those digests."""
    import sqlite3

    with sqlite3.connect(case) as conn:
        md5s = [r[0] for r in conn.execute("SELECT DISTINCT md5 FROM files WHERE md5 IS NOT NULL")]
        hashed = conn.execute("SELECT count(*) FROM files WHERE md5 IS NOT NULL").fetchone()[0]
    rng = random.Random(seed)
    lines = [f"{rng.randbytes(16).hex()}  /Program Files/Vendor {i % 997}/Product {i % 31}"
             f"/bin/component_{i:08d}.dll\n" for i in range(HITS_RANDOM)]  # fmt: skip
    lines += [f"{m}  /Program Files/Known/{m}.bin\n" for m in md5s]
    rng.shuffle(lines)
    source = work / "hits-set.txt"
    source.write_text("".join(lines))
    library = work / "hits-library"
    shutil.rmtree(library, ignore_errors=True)
    library.mkdir()
    command = [EXAMKIT, "hashset", "import", str(source), "--name", "every-file",
               "--kind", "known-good", "--format", "md5sum"]  # fmt: skip
    env = dict(env, EXAMKIT_HASHSETS=str(library))
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    source.unlink()
    return int(hashed)


def fls_count(image: Path) -> int:
    """Entries ``fls -r`` lists (examkit records each of them, $OrphanFiles too)."""
    out = subprocess.run(["fls", "-r", str(image)], capture_output=True, text=True, check=True)
    return sum(1 for line in out.stdout.splitlines() if line.strip())


def against_fiwalk(image: Path, work: Path, env: dict[str, str], streams: int) -> str:
    """The small files against fiwalk: ``fiwalk -X`` (MD5 and SHA-1 of every file) and the
    scan bench-scan compares (``--no-verify --no-perceptual``: MD5, SHA-1, SHA-256, type,
    matching), three interleaved pairs, medians. Per file, not per byte: where a seizure
    is mostly small files, this ratio is the one that counts."""
    xml, case = work / "small-fiwalk.xml", work / "small-compared.sqlite"
    pairs = []
    for _ in range(3):
        xml.unlink(missing_ok=True)
        theirs = measure_tree(["fiwalk", "-X", str(xml), str(image)], sample=False)[0]
        for leftover in work.glob(f"{case.name}*"):
            leftover.unlink()
        ours = measure_tree([EXAMKIT, "scan", str(image), "--case", str(case), "--json",
                             "--no-verify", "--no-perceptual"], env, sample=False)[0]  # fmt: skip
        pairs.append((theirs, ours))
    theirs, ours = (statistics.median(p[i] for p in pairs) for i in (0, 1))
    return (f"small files against fiwalk (3 interleaved pairs, medians): fiwalk -X {theirs:.1f} s"
            f" ({theirs / streams * 1000:.3f} ms a file), examkit scan --no-verify"
            f" --no-perceptual {ours:.1f} s ({ours / streams * 1000:.3f} ms a file):"
            f" {ours / theirs:.2f}x")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=400)
    parser.add_argument("--count", type=int, default=100_000, help="small files")
    parser.add_argument("--work", type=Path, help="folder to keep (images reused if present)")
    args = parser.parse_args()
    if missing_tool("mkfs.ext4", "fls"):
        return 2
    work = work_folder(args.work, "examkit-bench-memory-")
    env = dict(os.environ, EXAMKIT_HASHSETS=str(work / "library"))
    (work / "library").mkdir(exist_ok=True)
    failed = False
    try:
        print(f"work folder {work}; {len(os.sched_getaffinity(0))} cores")
        images = []
        for label, build in (
            ("20 GiB sparse ext4, 4 + 3 + 2 GiB files", lambda: build_sparse(work, args.seed)),
            (f"{args.count:,} small files, ext4", lambda: build_small(work, args.seed, args.count)),
        ):
            t = time.perf_counter()
            image = build()
            print(f"built {image.name} ({image.stat().st_size / GIB:.1f} GiB apparent, "
                  f"{image.stat().st_blocks * 512 / 2**20:.0f} MiB on disk) in "
                  f"{time.perf_counter() - t:.0f} s")  # fmt: skip
            images.append((label, image))
        print(f"\n{'image':42} {'scan':>9} {'rows':>9} {'fls':>9} {'GB hashed':>10}"
              f" {'peak PSS':>10} {'largest':>9}")  # fmt: skip
        for label, image in images:
            case = work / f"{image.stem}.sqlite"
            for leftover in work.glob(f"{image.stem}.sqlite*"):
                leftover.unlink()
            out = work / f"{image.stem}.json"
            # the sparse image: --no-verify, or two 20 GiB media passes dominate the run
            extra = ["--no-verify"] if "sparse" in image.name else []
            wall, total, largest = measure_tree(
                [EXAMKIT, "scan", str(image), "--case", str(case), "--json", *extra], env, out
            )
            evidence = json.loads(out.read_text())["evidence"][0]
            expected = fls_count(image)
            print(f"{label:42} {wall:8.1f}s {evidence['files']:9,} {expected:9,}"
                  f" {evidence['bytes_hashed'] / 1e9:10.2f} {total / 1024:7.0f} MiB"
                  f" {largest / 1024:5.0f} MiB")  # fmt: skip
            if "small" in image.name:
                small = (image, evidence["files"], wall)
            failed |= total / 1024 >= LIMIT_MIB or evidence["files"] != expected
        image, streams, small_wall = small
        want = build_hits_library(work, work / f"{image.stem}.sqlite", env, args.seed)
        case = work / "hits.sqlite"
        for leftover in work.glob("hits.sqlite*"):
            leftover.unlink()
        hits_env = dict(env, EXAMKIT_HASHSETS=str(work / "hits-library"))
        wall, total, largest = measure_tree(
            [EXAMKIT, "scan", str(image), "--case", str(case), "--json"], hits_env,
            work / "hits.json",
        )  # fmt: skip
        evidence = json.loads((work / "hits.json").read_text())["evidence"][0]
        label = f"the same, {want:,} hits in a {HITS_RANDOM / 1e6:.0f}M set"
        print(f"{label:42} {wall:8.1f}s {evidence['files']:9,} {'':9}"
              f" {evidence['bytes_hashed'] / 1e9:10.2f} {total / 1024:7.0f} MiB"
              f" {largest / 1024:5.0f} MiB; {evidence['known_good']:,} known-good")  # fmt: skip
        failed |= total / 1024 >= LIMIT_MIB or evidence["known_good"] != want
        print(f"target: peak total PSS < {LIMIT_MIB} MiB; every fls entry recorded; every"
              " hashed file known-good in the many-hits scan")  # fmt: skip
        print(f"\nper small file, whole scan (default: verified, perceptual hashes, typed by"
              f" libmagic; memory sampled, which costs it some CPU): {small_wall:.1f} s /"
              f" {streams:,} rows = {small_wall / streams * 1000:.3f} ms wall"
              " (target < 0.3 ms)")  # fmt: skip
        cpu = untyped_cpu_seconds(image, work / "untyped.sqlite", env)
        print(f"per small file, all but libmagic (a one-process scan of {image.name} with"
              f" libmagic replaced by a constant: listing, reading, digests, matching,"
              f" recording): {cpu:.1f} CPU s / {streams:,} rows = {cpu / streams * 1000:.3f} ms"
              " (target < 0.3 ms)")  # fmt: skip
        if shutil.which("fiwalk"):
            print(against_fiwalk(image, work, env, streams))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
