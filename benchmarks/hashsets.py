"""Hash-set benchmark: examkit against The Sleuth Kit's hfind, on the same files, same run.

    make bench-hashsets            # 5 million-line md5sum set, 100,000 lookups
    make bench-hashsets-large      # also: a 50 million-entry set, peak memory of the import

Prints wall time (process start included) and peak RSS of each command, and the
ratios the targets are stated in (docs/benchmarks.md). Both tools must find the
same hashes: a lookup whose answers differ from hfind's fails the benchmark.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import EXAMKIT, compile_bytecode, measure


def _hex(raw: bytes, width: int = 16) -> list[str]:
    """Fixed-width digests from raw bytes (never via numpy ``S`` items: they drop NULs)."""
    text = raw.hex()
    return [text[i : i + 2 * width] for i in range(0, len(text), 2 * width)]


def write_md5sum(path: Path, lines: int, seed: int = 2026) -> list[str]:
    """``lines`` md5sum lines of random digests; returns the digests (hex)."""
    rng = np.random.default_rng(seed)
    digests = _hex(rng.bytes(16 * lines))
    with open(path, "w") as fh:
        step = 1_000_000
        for start in range(0, lines, step):
            fh.write("".join(
                f"{d}  /evidence/reference/set/file{start + i:09d}.bin\n"
                for i, d in enumerate(digests[start : start + step])
            ))  # fmt: skip
    return digests


def write_plain(path: Path, lines: int, seed: int = 50) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "w") as fh:
        step = 2_000_000
        for start in range(0, lines, step):
            n = min(step, lines - start)
            fh.write("\n".join(_hex(rng.bytes(16 * n))) + "\n")


def queries(digests: list[str], n: int, path: Path, seed: int = 7) -> set[str]:
    """``n`` hashes, half from the set; returns the ones that are in it."""
    rng = np.random.default_rng(seed)
    present = [digests[i] for i in rng.choice(len(digests), n // 2, replace=False).tolist()]
    absent = _hex(rng.bytes(16 * (n - n // 2)))
    mixed = present + absent
    rng.shuffle(mixed)
    path.write_text("\n".join(mixed) + "\n")
    return set(present)


def ratio(peer: float, ours: float) -> str:
    return f"{peer / ours:.1f}x" if ours else "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=5_000_000)
    parser.add_argument("--queries", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3, help="lookup runs per tool (median)")
    parser.add_argument("--large", type=int, default=0, help="entries of the memory test (50e6)")
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: temporary)")
    args = parser.parse_args()
    if shutil.which("hfind") is None:
        print("hfind (The Sleuth Kit) is not installed: 'make apt-test' installs it")
        return 2
    compile_bytecode()
    work = args.keep or Path(tempfile.mkdtemp(prefix="examkit-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, EXAMKIT_HASHSETS=str(work / "library"))
    try:
        print(f"work folder {work}; {os.cpu_count()} cores")
        source = work / "set.md5"
        t = time.perf_counter()
        digests = write_md5sum(source, args.lines)
        print(f"wrote {args.lines:,} md5sum lines ({source.stat().st_size / 1e6:.0f} MB) "
              f"in {time.perf_counter() - t:.1f} s")  # fmt: skip
        hfind_copy = work / "hfind" / "set.md5"
        hfind_copy.parent.mkdir(exist_ok=True)
        shutil.copy(source, hfind_copy)

        hfind_runs, ours_runs = [], []
        for _run in range(args.runs):  # each run starts from nothing: no index, empty library
            for idx in hfind_copy.parent.glob("set.md5-*"):
                idx.unlink()
            shutil.rmtree(work / "library", ignore_errors=True)
            hfind_runs.append(measure(["hfind", "-i", "md5sum", str(hfind_copy)]))
            ours_runs.append(measure([EXAMKIT, "hashset", "import", str(source), "--name",
                                      "bench", "--kind", "known-good"], env))  # fmt: skip
        print(f"\nimport of the md5sum set, {args.runs} runs each (wall s; peak RSS MiB)")
        for label, runs in (("hfind -i md5sum", hfind_runs), ("examkit hashset import", ours_runs)):
            walls = [r[0] for r in runs]
            print(f"  {label:24} {walls[0]:7.2f} s  median {statistics.median(walls):6.2f} s"
                  f"  {max(r[1] for r in runs) / 1024:6.0f} MiB")  # fmt: skip
        first = ratio(hfind_runs[0][0], ours_runs[0][0])
        median = ratio(statistics.median(r[0] for r in hfind_runs),
                       statistics.median(r[0] for r in ours_runs))  # fmt: skip
        print(f"  ratio (hfind / examkit)  first run {first}, median {median}   target >= 5x")

        query_file = work / "queries.txt"
        expected = queries(digests, args.queries, query_file)
        print(f"\nlookup of {args.queries:,} hashes ({len(expected):,} in the set), "
              f"{args.runs} runs each; first run and median (wall s)")  # fmt: skip
        results = {}
        for label, cmd, env_ in (
            ("hfind -f", ["hfind", "-f", str(query_file), str(hfind_copy)], None),
            (
                "examkit hashset lookup",
                [EXAMKIT, "hashset", "lookup", "bench", "-f", str(query_file)],
                env,
            ),
        ):
            out = work / f"{label.split()[0]}.out"
            times = [measure(cmd, env_, out)[0] for _ in range(args.runs)]
            results[label] = times
            found = {
                line.split("\t")[0].lower()
                for line in out.read_text(errors="replace").splitlines()
                if line and "Hash Not Found" not in line
            }
            check = "same hashes found" if found == expected else "DIFFERENT ANSWERS"
            print(f"  {label:24} {times[0]:7.2f} s  median {statistics.median(times):6.2f} s"
                  f"   {check} ({len(found):,})")  # fmt: skip
            if found != expected:
                return 1
        first = ratio(results["hfind -f"][0], results["examkit hashset lookup"][0])
        median = ratio(statistics.median(results["hfind -f"]),
                       statistics.median(results["examkit hashset lookup"]))  # fmt: skip
        print(f"  ratio (hfind / examkit)  first run {first}, median {median}   target >= 5x")

        if args.large:
            big = work / "large.txt"
            t = time.perf_counter()
            write_plain(big, args.large)
            print(f"\nwrote {args.large:,} plain MD5 lines ({big.stat().st_size / 1e9:.2f} GB)"
                  f" in {time.perf_counter() - t:.0f} s")  # fmt: skip
            wall, rss = measure([EXAMKIT, "hashset", "import", str(big), "--name", "large",
                                 "--kind", "known-good"], env)  # fmt: skip
            print(f"  examkit hashset import   {wall:7.1f} s  peak RSS {rss / 1024:.0f} MiB"
                  "   target < 2048 MiB")  # fmt: skip
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
