"""Scan benchmark: examkit against The Sleuth Kit's fiwalk on the same NTFS image, same run.

    make bench-scan                 # builds a >= 2 GB NTFS image (seeded), then measures
    make bench-scan-lognormal       # the same, with lognormal_tree.py's tree (--shape)
    make bench-scan-e01             # the lognormal image acquired as an E01 (--e01), both
                                    # tools reading the E01
    benchmarks/scan_vs_fiwalk.py --runs 5 --work DIR   # more pairs; keep the image in DIR

Builds the image with real tools (make_tree.py, or with `--shape lognormal`
lognormal_tree.py: file sizes of a used disk and a few videos; build_ntfs.sh: mkntfs,
ntfs-3g) and
a hash-set library (a 1,002,000-entry known-good md5sum set and a 50,025-entry
known-bad sha256sum set, each holding some of the image's files), warms the page
cache, then times `fiwalk -X` (MD5 + SHA-1 of every file) and `examkit scan` (MD5 +
SHA-1 + SHA-256 + type + hash-set matching, its counts checked), each as a whole
process, in interleaved pairs (`--runs`, default 3; the medians are compared), then
the scans with perceptual hashes and with the media verified once each, and prints
wall times, ratios, peak memory (total PSS of the process and its
workers), examkit's hashing rate as a fraction of this machine's hashing limit (hashlib's three
digests on every core, as issue 5 defines it; examkit's one-pass digest goes faster,
and its own limit and floor are printed beside), and the time per file.
Targets (issue 5): examkit <= 0.5x fiwalk; >= 80% of the hashing limit;
< 0.3 ms per small file; peak memory < 400 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from common import (  # benchmarks/ is the script folder
    EXAMKIT,
    compile_bytecode,
    measure_tree,
    missing_tool,
    untyped_cpu_seconds,
    work_folder,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
SHAPE_COUNT = {"tree": 8000, "lognormal": 6000}  # default --count of each shape
HEAD_SIZE = 8192  # the head examkit types (libmagic's own regex_max); examkit.hashing.HEAD_SIZE


def acquire_e01(work: Path, image: Path) -> Path:
    """``image`` acquired as an E01 set (ewfacquire, fast compression, 32 KiB chunks),
    made once per work folder; its first segment."""
    first = work / "bench-ntfs.E01"
    if first.exists() and first.stat().st_mtime >= image.stat().st_mtime:
        return first
    for old in work.glob("bench-ntfs.E*"):
        old.unlink()
    subprocess.run(["ewfacquire", "-u", "-q", "-c", "fast", "-S", "0", "-t",
                    str(work / "bench-ntfs"), str(image)], check=True,
                   stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)  # fmt: skip
    return first


def build_image(work: Path, args: argparse.Namespace) -> Path:
    image = work / "bench-ntfs.raw"
    if image.exists():
        return image
    tree, plan = work / "tree", work / "plan.json"
    if args.shape == "lognormal":
        generator = [str(Path(__file__).with_name("lognormal_tree.py")), "--mu", str(args.mu),
                     "--sigma", str(args.sigma)]  # fmt: skip
    else:
        generator = [str(FIXTURES / "make_tree.py"), "--big-size", str(args.big),
                     *(["--big-path", args.big_path] if args.big_path else [])]  # fmt: skip
    count = args.count or SHAPE_COUNT[args.shape]
    subprocess.run([sys.executable, *generator, "--seed", str(args.seed), "--count",
                    str(count), "--plan", str(plan), str(tree)], check=True)  # fmt: skip
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run(["bash", str(FIXTURES / "build_ntfs.sh"), str(tree), str(plan), str(image),
                    str(args.size_mb)], check=True, env=env)  # fmt: skip
    shutil.rmtree(tree)
    return image


GOOD_RANDOM, GOOD_FROM_IMAGE = 1_000_000, 2_000  # the known-good (NSRL-like) set
BAD_RANDOM, BAD_FROM_IMAGE = 50_000, 25  # the known-bad set (generated stand-ins)


def build_library(work: Path, env: dict[str, str], seed: int) -> tuple[int, int]:
    """A hash-set library for the scan to match against: a known-good md5sum set of
    GOOD_RANDOM random digests plus the MD5 of GOOD_FROM_IMAGE of the image's files, and
    a known-bad sha256sum set of BAD_RANDOM random digests plus the SHA-256 of
    BAD_FROM_IMAGE others. The files are drawn (seeded) from the generator's plan, whose
    digests make_tree.py computed itself: allocated files whose content no other stream
    has, empty files left out (the file system's own empty streams, such as NTFS's
    ``$Volume``, share their digests). Returns the (known-good, flagged) counts a correct
    scan must report."""
    import random

    plan = json.loads((work / "plan.json").read_text())
    gone = set(plan["delete"])
    seen = Counter(e["md5"] for key in ("files", "ads", "after_delete") for e in plan[key])
    candidates = [
        f for f in plan["files"] if f["path"] not in gone and seen[f["md5"]] == 1 and f["size"] > 0
    ]
    rng = random.Random(seed)
    picked = rng.sample(candidates, GOOD_FROM_IMAGE + BAD_FROM_IMAGE)
    good, bad = picked[:GOOD_FROM_IMAGE], picked[GOOD_FROM_IMAGE:]
    library = work / "library"
    shutil.rmtree(library, ignore_errors=True)
    library.mkdir()
    sources = work / "sets"
    sources.mkdir(exist_ok=True)
    for name, kind, digest, random_count, chosen, size in (
        ("nsrl-like", "known-good", "md5", GOOD_RANDOM, good, 16),
        ("known-bad-standins", "known-bad", "sha256", BAD_RANDOM, bad, 32),
    ):
        lines = [f"{rng.randbytes(size).hex()}  /reference/{name}/{i:07d}.bin\n"
                 for i in range(random_count)]  # fmt: skip
        lines += [f"{f[digest]}  /reference/{name}/{Path(f['path']).name}\n" for f in chosen]
        rng.shuffle(lines)
        source = sources / f"{name}.txt"
        source.write_text("".join(lines))
        t = time.perf_counter()
        subprocess.run([EXAMKIT, "hashset", "import", str(source), "--name", name, "--kind",
                        kind, "--format", "md5sum"], check=True, env=env,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        print(
            f"hash set {name} ({kind}): {len(lines):,} {digest} digests, {len(chosen):,} of"
            f" them of the image's files; imported in {time.perf_counter() - t:.1f} s"
        )
    return len(good), len(bad)


def _hash_rate(seconds: float = 1.5) -> float:
    """MD5 + SHA-1 + SHA-256 of 1 MiB blocks on one core, bytes per second."""
    block = os.urandom(1 << 20)
    objects = [hashlib.md5(), hashlib.sha1(), hashlib.sha256()]
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for obj in objects:
            obj.update(block)
        done += len(block)
    return done / (time.perf_counter() - start)


def algorithm_seconds_per_byte(seconds: float = 0.5) -> dict[str, float]:
    """Core-seconds per byte of each digest alone (hashlib, 1 MiB blocks, one core)."""
    block = os.urandom(1 << 20)
    costs = {}
    for name in ("md5", "sha1", "sha256"):
        h, done, start = hashlib.new(name), 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            h.update(block)
            done += len(block)
        costs[name] = (time.perf_counter() - start) / done
    return costs


def one_pass_seconds_per_byte(seconds: float = 0.5) -> float | None:
    """Core-seconds per byte of examkit's one-pass MD5 + SHA-1 + SHA-256
    (``examkit/_digest_native.c``, 1 MiB blocks, one core), or None where examkit does
    not use it (not built, no SHA extensions, turned off, check failed)."""
    from examkit.hashing import native_triple

    triple = native_triple()[0]
    if triple is None:
        return None
    block, digest = os.urandom(1 << 20), triple()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        digest.update(block)
        done += len(block)
    return (time.perf_counter() - start) / done


def _one_pass_rate(seconds: float) -> float:
    cost = one_pass_seconds_per_byte(seconds)
    return 1 / cost if cost else 0.0


def one_pass_limit(cores: int) -> float:
    """All cores running the one-pass digest at once (bytes/s); 0 where it is not used."""
    with ProcessPoolExecutor(cores) as pool:
        return sum(pool.map(_one_pass_rate, [1.5] * cores))


def digest_costs(costs: dict[str, float], one_pass: float | None) -> dict[str, float]:
    """The digest costs a scan on this machine pays: hashlib's three, or the one pass."""
    return {"md5+sha1+sha256 (one pass)": one_pass} if one_pass else costs


def hashing_floor(total: int, largest: int, cores: int, costs: dict[str, float]) -> float:
    """The least wall time in which any tool can compute MD5, SHA-1 and SHA-256 of
    ``total`` bytes on ``cores`` cores with these digest speeds, doing nothing else:
    all cores busy hashing, and no less than one digest of the largest stream, which is
    serial (the three digests of one stream may even run on three cores at once)."""
    return max(total * sum(costs.values()) / cores, largest * max(costs.values()))


def file_heads(image: Path, size: int) -> list[bytes]:
    """The first ``size`` bytes of every non-empty regular file of the image's file system,
    read with pytsk3 directly (default data streams; not through examkit)."""
    import pytsk3

    fs = pytsk3.FS_Info(pytsk3.Img_Info(str(image)))
    heads: list[bytes] = []
    todo, seen = [fs.open_dir("/")], set()
    while todo:
        for entry in todo.pop():
            meta = entry.info.meta
            if meta is None or entry.info.name.name in (b".", b".."):
                continue
            if meta.type == pytsk3.TSK_FS_META_TYPE_DIR:
                if meta.addr not in seen:
                    seen.add(meta.addr)
                    with contextlib.suppress(OSError):
                        todo.append(entry.as_directory())
            elif meta.type == pytsk3.TSK_FS_META_TYPE_REG and meta.size > 0:
                with contextlib.suppress(OSError):
                    heads.append(entry.read_random(0, min(meta.size, size)))
    return heads


def typing_seconds(heads: list[bytes], full: bool = False) -> float:
    """Core-seconds to give the MIME type of these heads on one core: as examkit types them
    (ASCII text through the checked smaller database), or with libmagic's full database."""
    from examkit import filetype

    if full:
        import magic

        detect = magic.Magic(mime=True).from_buffer
    else:
        detect = filetype._type_head  # no cache: every head typed
    detect(b"warm up")
    start = time.perf_counter()
    for head in heads:
        detect(head)
    return time.perf_counter() - start


def hashing_limit() -> tuple[float, int]:
    """This machine's limit: all cores hashing at once (bytes/s), and the core count."""
    cores = len(os.sched_getaffinity(0))
    with ProcessPoolExecutor(cores) as pool:
        rates = list(pool.map(_hash_rate, [1.5] * cores))
    return sum(rates), cores


def _largest_stream(case: Path) -> int:
    conn = sqlite3.connect(f"file:{case}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT max(size) FROM files WHERE status = 'ok'").fetchone()
    finally:
        conn.close()
    return int(row[0] or 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=5151)
    parser.add_argument("--shape", choices=sorted(SHAPE_COUNT), default="tree",
                        help="tree: make_tree.py's small files and one large file;"
                        " lognormal: lognormal_tree.py's sizes of a used disk and a few"
                        " videos")  # fmt: skip
    parser.add_argument("--count", type=int, help="files in the tree (default: tree 8000,"
                        " lognormal 6000)")  # fmt: skip
    parser.add_argument("--mu", type=float, default=9.5, help="lognormal: mu of ln(size)")
    parser.add_argument("--sigma", type=float, default=2.0, help="lognormal: sigma of ln(size)")
    parser.add_argument("--big", type=int, default=1_200_000_000,
                        help="tree: the one large file (bytes)")  # fmt: skip
    parser.add_argument("--big-path", help="where the large file goes in the tree (default:"
                        " make_tree.py's, early in a walk; zzz/big.log: the last folder a"
                        " directory walk reaches)")  # fmt: skip
    parser.add_argument("--size-mb", type=int, default=2600, help="NTFS volume size")
    parser.add_argument("--work", type=Path, help="folder to keep (image reused if present)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved fiwalk/examkit pairs")
    parser.add_argument("--e01", action="store_true", help="acquire the image as an E01 set"
                        " (ewfacquire) and have both tools read that")  # fmt: skip
    args = parser.parse_args()
    if missing_tool("fiwalk", "mkntfs", "ntfs-3g", *(["ewfacquire"] if args.e01 else [])):
        return 2
    work = work_folder(args.work, "examkit-bench-scan-")
    failed = False
    compile_bytecode()  # as a wheel install has it, whatever PYTHONDONTWRITEBYTECODE says
    try:
        t = time.perf_counter()
        image = build_image(work, args)
        print(f"image {image} ({image.stat().st_size / 1e9:.2f} GB) ready in "
              f"{time.perf_counter() - t:.0f} s")  # fmt: skip
        evidence = acquire_e01(work, image) if args.e01 else image  # what both tools read
        if args.e01:
            segments = sorted(work.glob("bench-ntfs.E*"))
            stored = sum(p.stat().st_size for p in segments)
            print(f"E01: {len(segments)} segment(s), {stored / 1e9:.2f} GB")
        for read in sorted(work.glob("bench-ntfs.*")):  # page cache warm for both tools
            with open(read, "rb") as fh:
                while fh.read(16 << 20):
                    pass
        limit, cores = hashing_limit()
        env = dict(os.environ, EXAMKIT_HASHSETS=str(work / "library"))
        want_good, want_bad = build_library(work, env, args.seed)
        xml = work / "fiwalk.xml"
        fiwalk = ["fiwalk", "-X", str(xml), str(evidence)]
        results = {}
        configs = (
            ("examkit scan --no-verify --no-perceptual", ["--no-verify", "--no-perceptual"]),
            ("examkit scan --no-verify (+ perceptual hashes)", ["--no-verify"]),
            ("examkit scan (default: + media verified at start and end)", []),
        )
        case = work / "case.sqlite"

        def run_scan(label: str, extra: list[str], memory: bool = False) -> tuple[float, int]:
            for leftover in work.glob("case.sqlite*"):
                leftover.unlink()
            out = work / ("memory.json" if memory else "scan.json")
            command = [EXAMKIT, "scan", str(evidence), "--case", str(case), "--json", *extra]
            wall, peak, _ = measure_tree(command, env, out, sample=memory)
            if not memory:
                results[label] = json.loads(out.read_text())
            return wall, peak

        # This machine's speed drifts by 10-20% within minutes: fiwalk and the scan the
        # issue compares run in interleaved pairs, and the medians are compared.
        pairs = []
        for _ in range(args.runs):
            xml.unlink(missing_ok=True)
            theirs = measure_tree(fiwalk, sample=False)[0]
            pairs.append((theirs, run_scan(*configs[0])[0]))
        rows = [
            ("fiwalk -X (md5, sha1)", statistics.median(p[0] for p in pairs), 0),
            (configs[0][0], statistics.median(p[1] for p in pairs), 0),
        ]
        rows += [(label, run_scan(label, extra)[0], 0) for label, extra in configs[1:]]
        for label, _extra in configs:
            found = results[label]["evidence"][0]
            if (found["known_good"], found["flagged"]) != (want_good, want_bad):
                print(f"{label}: {found['known_good']} known-good and {found['flagged']}"
                      f" flagged streams, expected {want_good} and {want_bad}")  # fmt: skip
                failed = True
        # memory in runs of their own: sampling it costs the command measured CPU time
        xml.unlink()
        rows[0] = (*rows[0][:2], measure_tree(fiwalk)[1])
        for i, (label, extra) in enumerate(configs, start=1):
            rows[i] = (*rows[i][:2], run_scan(label, extra, memory=True)[1])
        print(f"\n{'pair':>4} {'fiwalk -X':>10} {'examkit':>9} {'ratio':>7}"
              f"   (examkit scan --no-verify --no-perceptual, interleaved)")  # fmt: skip
        for i, (theirs, ours) in enumerate(pairs, 1):
            print(f"{i:>4} {theirs:9.2f}s {ours:8.2f}s {ours / theirs:6.2f}x")
        fiwalk_wall = rows[0][1]
        one_pass = one_pass_seconds_per_byte()
        fast_limit = one_pass_limit(cores) if one_pass else 0.0
        print(
            f"\n{cores} cores; hashing limit (md5+sha1+sha256, all cores): {limit / 1e6:.0f} MB/s"
            + (f"; examkit's one-pass digest, all cores: {fast_limit / 1e6:.0f} MB/s"
               if one_pass else "; examkit's one-pass digest is not used here")
        )  # fmt: skip
        print(f"{'':58} {'wall':>8} {'ratio':>7} {'peak PSS':>10} (first two: medians of"
              f" the {args.runs} pairs; memory: a run of its own)")  # fmt: skip
        for label, wall, rss in rows:
            print(f"{label:58} {wall:7.2f}s {wall / fiwalk_wall:6.2f}x {rss / 1024:8.0f} MiB")
        scan = results["examkit scan --no-verify --no-perceptual"]["evidence"][0]
        wall = rows[1][1]
        files = scan["files"]
        print(f"\nexamkit --no-verify --no-perceptual: {scan['bytes_hashed'] / 1e9:.2f} GB in"
              f" {files:,} streams;"
              f" {scan['bytes_hashed'] / wall / 1e6:.0f} MB/s ="
              f" {scan['bytes_hashed'] / wall / limit:.0%} of the hashing limit;"
              f" {wall / files * 1000:.2f} ms per stream (whole run / streams)")  # fmt: skip
        largest = _largest_stream(work / "case.sqlite")
        costs = algorithm_seconds_per_byte()
        floor = hashing_floor(scan["bytes_hashed"], largest, cores, costs)
        rates = ", ".join(f"{name} {1 / c / 1e6:.0f}" for name, c in costs.items())
        print(
            f"hashing floor with hashlib (MB/s on one core: {rates}; largest stream"
            f" {largest / 1e9:.2f} GB): {floor:.2f} s = {floor / fiwalk_wall:.2f}x fiwalk's time"
        )
        paid = digest_costs(costs, one_pass)
        if one_pass:
            fast = hashing_floor(scan["bytes_hashed"], largest, cores, paid)
            print(
                f"hashing floor with examkit's one-pass digest ({1 / one_pass / 1e6:.0f} MB/s on"
                f" one core): {fast:.2f} s = {fast / fiwalk_wall:.2f}x: the three digests alone,"
                " before listing and typing"
            )
        heads = file_heads(image, HEAD_SIZE)
        typing = typing_seconds(heads)
        full_typing = typing_seconds(heads, full=True)
        hash_core_s = scan["bytes_hashed"] * sum(paid.values())
        both = max((hash_core_s + typing) / cores, largest * max(paid.values()))
        print(
            f"typing floor (MIME type of the first {HEAD_SIZE} bytes of each of the"
            f" {len(heads):,} files, one core, as examkit types them): {typing:.2f} core-s ="
            f" {typing / cores:.2f} s on {cores} cores = {typing / cores / fiwalk_wall:.2f}x"
            f" fiwalk's time (libmagic's full database for every head: {full_typing:.2f}"
            f" core-s, {full_typing / typing:.1f}x); hashing and typing together:"
            f" {both:.2f} s = {both / fiwalk_wall:.2f}x"
        )
        rest = untyped_cpu_seconds(evidence, work / "untyped.sqlite", env) - hash_core_s
        print(
            f"CPU per stream beyond the digests and libmagic (a one-process scan with"
            f" libmagic replaced by a constant, less the digests' core-seconds; listing,"
            f" reading {scan['bytes_hashed'] / 1e9:.2f} GB through pytsk3"
            f"{' from the E01' if args.e01 else ''}, matching,"
            f" recording): {rest / files * 1000:.3f} ms; typing adds"
            f" {typing / files * 1000:.3f} ms (small files alone: make bench-memory)"
        )
        print(f"hash-set matching: every scan found the {want_good:,} known-good and the"
              f" {want_bad} known-bad files of the library" if not failed else
              "hash-set matching: DIFFERENT COUNTS (above)")  # fmt: skip
        print("targets: ratio <= 0.50x; >= 80% of the limit; < 0.3 ms per small file; < 400 MiB")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
