"""Large files: examkit's hashing rate against this machine's hashing limit, and fiwalk.

    make bench-large                # builds a seeded ext4 image of large files, then measures

Issue 5 asks for >= 80% of the hashing limit "on large files"; the NTFS benchmark
(`make bench-scan`) is mostly small files, whose typing dominates. This one builds
an NTFS image (mkntfs + ntfs-3g, as `make bench-scan`; ``--fs ext4`` builds it with
``mkfs.ext4 -d`` instead, no mount needed) holding a few large files of seeded random
bytes (default 6 x 384 MiB) and one small text file, warms the page cache, and in the
same run measures:

- the hashing limit (MD5 + SHA-1 + SHA-256 of 1 MiB blocks, all cores) and each
  digest's speed on one core;
- `fiwalk -X` (MD5 + SHA-1) and `examkit scan --no-verify --no-perceptual`
  (MD5 + SHA-1 + SHA-256 + type), each as a whole process;
- examkit's bytes per second as a share of the limit, and two floors: the hashing
  floor (the three digests on all cores, no less than the slowest digest of the
  largest file), and fiwalk's own digest cost (MD5 + SHA-1 of every byte on one
  core), whose ratio is the best any scan computing the three digests on these
  cores can reach against fiwalk.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import (
    EXAMKIT,
    compile_bytecode,
    fiwalk_digests,
    measure_tree,
    missing_tool,
    work_folder,
)
from scan_vs_fiwalk import (
    FIXTURES,
    algorithm_seconds_per_byte,
    digest_costs,
    hashing_floor,
    hashing_limit,
    one_pass_limit,
    one_pass_seconds_per_byte,
)

MIB = 1 << 20


def build_image(work: Path, seed: int, count: int, size_mib: int, fs: str) -> Path:
    image = work / f"large-{fs}-{count}x{size_mib}m.raw"
    if image.exists():
        return image
    rng = random.Random(seed)
    src = work / "large-src"
    shutil.rmtree(src, ignore_errors=True)
    (src / "video").mkdir(parents=True)
    for i in range(count):
        with open(src / "video" / f"clip{i:02d}.bin", "wb") as fh:
            for _ in range(size_mib):
                fh.write(rng.randbytes(MIB))
    (src / "readme.txt").write_text("seeded random bytes for the large-file benchmark\n")
    size_mb = count * size_mib + 256
    if fs == "ntfs":
        plan = work / "large-plan.json"
        plan.write_text(json.dumps({"ads": [], "delete": [], "after_delete": []}))
        env = {**os.environ, "PYTHON": sys.executable}
        subprocess.run(["bash", str(FIXTURES / "build_ntfs.sh"), str(src), str(plan), str(image),
                        str(size_mb)], check=True, env=env)  # fmt: skip
    else:
        with open(image, "wb") as fh:
            fh.truncate(size_mb * MIB)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(src), str(image)], check=True)
    shutil.rmtree(src)
    return image


def same_digests(xml: Path, case: Path) -> int:
    """The large files whose MD5 and SHA-1 fiwalk and examkit agree on; raises if any differ."""
    import sqlite3

    theirs = {
        path: (digests.get("md5"), digests.get("sha1"))
        for path, digests in fiwalk_digests(xml).items()
        if path.startswith("/video/clip")
    }
    query = "SELECT path, md5, sha1 FROM files WHERE path LIKE '/video/clip%' AND stream IS NULL"
    with contextlib.closing(sqlite3.connect(f"file:{case}?mode=ro", uri=True)) as conn:
        ours = {path: (md5, sha1) for path, md5, sha1 in conn.execute(query)}
    if not theirs or ours != theirs:
        raise SystemExit(f"fiwalk and examkit disagree on the large files: {theirs} {ours}")
    return len(ours)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=808)
    parser.add_argument("--count", type=int, default=6, help="large files")
    parser.add_argument("--size-mib", type=int, default=384, help="size of each (MiB)")
    parser.add_argument("--runs", type=int, default=2, help="interleaved runs of each tool")
    parser.add_argument("--fs", choices=("ntfs", "ext4"), default="ntfs")
    parser.add_argument("--work", type=Path, help="folder to keep (image reused if present)")
    args = parser.parse_args()
    if missing_tool("fiwalk", "mkntfs" if args.fs == "ntfs" else "mkfs.ext4"):
        return 2
    work = work_folder(args.work, "examkit-bench-large-")
    compile_bytecode()
    try:
        t = time.perf_counter()
        image = build_image(work, args.seed, args.count, args.size_mib, args.fs)
        print(f"image {image} ({image.stat().st_size / 1e9:.2f} GB) ready in "
              f"{time.perf_counter() - t:.0f} s")  # fmt: skip
        with open(image, "rb") as fh:  # page cache warm for both tools
            while fh.read(16 * MIB):
                pass
        limit, cores = hashing_limit()
        costs = algorithm_seconds_per_byte()
        (work / "library").mkdir(exist_ok=True)
        env = {"EXAMKIT_HASHSETS": str(work / "library")}
        fiwalk, examkit, hashed, agreed = [], [], 0, 0
        for _ in range(args.runs):
            xml = work / "fiwalk.xml"
            xml.unlink(missing_ok=True)
            fiwalk.append(measure_tree(["fiwalk", "-X", str(xml), str(image)], sample=False)[0])
            for leftover in work.glob("case.sqlite*"):
                leftover.unlink()
            out = work / "scan.json"
            wall, _rss, _ = measure_tree(
                [EXAMKIT, "scan", str(image), "--case", str(work / "case.sqlite"), "--json",
                 "--no-verify", "--no-perceptual"],
                {**os.environ, **env}, out, sample=False,
            )  # fmt: skip
            examkit.append(wall)
            hashed = json.loads(out.read_text())["evidence"][0]["bytes_hashed"]
            agreed = same_digests(xml, work / "case.sqlite")
        # this machine's speed drifts within minutes: the limit again, after the runs
        after, _ = hashing_limit()
        drift = f"{limit / 1e6:.0f} MB/s before the runs, {after / 1e6:.0f} MB/s after"
        limit = (limit + after) / 2
        largest = args.size_mib * MIB
        floor = hashing_floor(hashed, largest, cores, costs)
        one_pass = one_pass_seconds_per_byte()
        fast_limit = one_pass_limit(cores) if one_pass else 0.0
        fast = hashing_floor(hashed, largest, cores, digest_costs(costs, one_pass))
        fiwalk_digests = hashed * (costs["md5"] + costs["sha1"])
        rates = ", ".join(f"{name} {1 / c / 1e6:.0f}" for name, c in costs.items())
        print(f"\n{cores} cores; hashing limit (md5+sha1+sha256, all cores):"
              f" {limit / 1e6:.0f} MB/s (mean of {drift}); one core, MB/s: {rates}")  # fmt: skip
        print(f"{args.fs}: {hashed / 1e9:.2f} GB hashed in {args.count} files of"
              f" {args.size_mib} MiB; MD5 and SHA-1 of all {agreed} equal to fiwalk's")  # fmt: skip
        if one_pass:
            print(f"examkit's one-pass digest (examkit/_digest_native.c):"
                  f" {1 / one_pass / 1e6:.0f} MB/s on one core,"
                  f" {fast_limit / 1e6:.0f} MB/s on all: its own limit")  # fmt: skip
        print(f"{'run':>4} {'fiwalk -X':>10} {'examkit':>9} {'ratio':>7} {'examkit MB/s':>13}"
              f" {'of limit':>9}" + (f" {'of one-pass':>12}" if one_pass else ""))  # fmt: skip
        for i, (f, e) in enumerate(zip(fiwalk, examkit, strict=True), 1):
            print(f"{i:>4} {f:9.2f}s {e:8.2f}s {e / f:6.2f}x {hashed / e / 1e6:12.0f}"
                  f" {hashed / e / limit:8.0%}"
                  + (f" {hashed / e / fast_limit:11.0%}" if one_pass else ""))  # fmt: skip
        best_f = min(fiwalk)
        print(f"hashing floor (the three digests at the one-core speeds above, on {cores} cores,"
              f" no less than the largest file's slowest digest): {floor:.2f} s ="
              f" {floor / best_f:.2f}x fiwalk's best; fiwalk's own digests (md5+sha1 of every"
              f" byte, one core): {fiwalk_digests:.2f} s, so a scan computing the three digests"
              f" on {cores} cores can do no better than {floor / fiwalk_digests:.2f}x a fiwalk"
              f" that did nothing but hash")  # fmt: skip
        if one_pass:
            print(f"with examkit's one-pass digest the hashing floor is {fast:.2f} s ="
                  f" {fast / best_f:.2f}x fiwalk's best")  # fmt: skip
        print("targets (issue 5): >= 80% of the hashing limit on large files; <= 0.5x fiwalk")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
