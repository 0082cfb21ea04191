"""Fuzzing: scan mutated fixture images and check that nothing hangs, crashes or is lost.

    make fuzz                         # 200 mutants (python -m tests.fuzz --count 200)
    python -m tests.fuzz --count 20 --seed 7 --keep /tmp/fuzz

Each mutant is a fixture image with one kind of damage: bytes flipped in the
file-system metadata (the first 256 KiB, where boot sectors, superblocks, FATs,
group descriptors and the start of the MFT live, or anywhere), the image
truncated, a region zeroed, or two sectors swapped. Each is scanned with the
real ``examkit scan`` into a copy of a case that already holds a good scan,
and must:

- end within a time bound (no hang in the parent), by itself, without a signal;
- leave a run with a final status, and an error record when that status is
  ``failed`` (or streams with status ``error`` for a file that killed or hung
  its worker);
- keep every row of the earlier scan unchanged, and pass ``examkit verify``.

Prints: mutants tried, scans complete / failed, worker crashes isolated,
hangs stopped, and any violation (which fails the run).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "images"
EXAMKIT = str(Path(sys.executable).with_name("examkit"))
IMAGES = ("fat16.raw.gz", "ext4.raw.gz", "ntfs.raw.gz", "exfat.raw.gz", "iso9660.raw.gz",
          "mbr.raw.gz")  # fmt: skip
SECTOR = 512
METADATA = 256 << 10


@dataclass
class Report:
    tried: int = 0
    complete: int = 0
    failed: int = 0
    crashes_isolated: int = 0
    hangs_stopped: int = 0
    seconds: list[float] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One kind of damage, chosen at random; returns the mutant and what was done."""
    buf = bytearray(data)
    kind = rng.choice(["flip-metadata", "flip-metadata", "flip-anywhere", "truncate", "zero",
                       "swap"])  # fmt: skip
    if kind.startswith("flip"):
        limit = min(len(buf), METADATA) if kind == "flip-metadata" else len(buf)
        count = rng.randint(1, 64)
        for _ in range(count):
            buf[rng.randrange(limit)] ^= 1 << rng.randrange(8)
        return bytes(buf), f"{kind} x{count}"
    if kind == "truncate":
        cut = rng.randrange(SECTOR, len(buf))
        return bytes(buf[:cut]), f"truncate at {cut}"
    if kind == "zero":
        start = rng.randrange(0, min(len(buf), 4 * METADATA))
        length = rng.choice([SECTOR, 4096, 65536])
        buf[start : start + length] = bytes(len(buf[start : start + length]))
        return bytes(buf), f"zero {length} at {start}"
    sectors = len(buf) // SECTOR
    a, b = rng.randrange(min(sectors, 2048)), rng.randrange(sectors)
    sa, sb = slice(a * SECTOR, (a + 1) * SECTOR), slice(b * SECTOR, (b + 1) * SECTOR)
    buf[sa], buf[sb] = bytes(buf[sb]), bytes(buf[sa])
    return bytes(buf), f"swap sectors {a} and {b}"


def _rows_digest(case: Path, evidence_id: str) -> str:
    conn = sqlite3.connect(case)
    try:
        rows = conn.execute(
            "SELECT * FROM files WHERE evidence_id = ? ORDER BY file_id", (evidence_id,)
        ).fetchall()
    finally:
        conn.close()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def prepare_base(work: Path) -> tuple[Path, str]:
    """A case holding one good scan: mutants are scanned into copies of it."""
    good = work / "good.raw"
    good.write_bytes(gzip.decompress((FIXTURES / "fat16.raw.gz").read_bytes()))
    case = work / "base.sqlite"
    done = subprocess.run([EXAMKIT, "scan", str(good), "--case", str(case), "--evidence-id",
                           "GOOD", "--no-perceptual"], capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"the base scan failed: {done.stderr}")
    return case, _rows_digest(case, "GOOD")


def run(count: int, seed: int, work: Path, timeout: float = 120.0, stall: int = 10) -> Report:
    rng = random.Random(seed)
    base, base_digest = prepare_base(work)
    originals = {name: gzip.decompress((FIXTURES / name).read_bytes()) for name in IMAGES}
    report = Report()
    for n in range(count):
        name = rng.choice(IMAGES)
        data, what = mutate(originals[name], rng)
        image = work / f"mutant-{n:04d}.raw"
        image.write_bytes(data)
        case = work / f"case-{n:04d}.sqlite"
        shutil.copy(base, case)
        label = f"#{n} {name} ({what})"
        report.tried += 1
        started = time.monotonic()
        try:
            done = subprocess.run(
                [EXAMKIT, "scan", str(image), "--case", str(case), "--evidence-id", "MUTANT",
                 "--workers", "2", "--stall-timeout", str(stall), "--json"],
                capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            report.violations.append(f"{label}: the scan did not end within {timeout:.0f} s")
            continue
        report.seconds.append(time.monotonic() - started)
        if done.returncode < 0 or done.returncode not in (0, 1, 3):
            report.violations.append(f"{label}: exit code {done.returncode}: "
                                     f"{done.stderr.strip()[-300:]}")  # fmt: skip
            continue
        if "internal error" in done.stderr or "Traceback" in done.stderr:
            report.violations.append(f"{label}: {done.stderr.strip()[-300:]}")
        _check_case(case, base_digest, label, report)
        image.unlink()
        if not report.violations or not report.violations[-1].startswith(label):
            for leftover in work.glob(f"{case.name}*"):  # the case, its WAL and its lock
                leftover.unlink()
    return report


def _check_case(case: Path, base_digest: str, label: str, report: Report) -> None:
    conn = sqlite3.connect(case)
    try:
        runs = conn.execute("SELECT status, error FROM runs ORDER BY run_id").fetchall()
        errors = [str(r[0] or "") for r in conn.execute(
            "SELECT error FROM files WHERE evidence_id = 'MUTANT' AND status = 'error'"
        )]  # fmt: skip
        failed_entries = conn.execute(
            "SELECT count(*) FROM custody_log WHERE action IN ('evidence_failed', 'run_failed')"
        ).fetchone()[0]
    finally:
        conn.close()
    status, error = runs[-1]
    if status == "complete":
        report.complete += 1
    elif status == "failed":
        report.failed += 1
        if not error or not failed_entries:
            report.violations.append(f"{label}: run failed without an error record")
    else:
        report.violations.append(f"{label}: the run ended as {status!r}")
    report.crashes_isolated += sum("the worker process" in e and "no progress" not in e
                                   for e in errors)  # fmt: skip
    report.hangs_stopped += sum("no progress for" in e for e in errors)
    if _rows_digest(case, "GOOD") != base_digest:
        report.violations.append(f"{label}: rows of the earlier scan changed")
    verify = subprocess.run([EXAMKIT, "verify", str(case)], capture_output=True, text=True)
    if verify.returncode != 0:
        report.violations.append(f"{label}: examkit verify failed: {verify.stdout[-300:]}")


def print_report(report: Report) -> None:
    seconds = sorted(report.seconds) or [0.0]
    print(f"mutants tried: {report.tried}; scans complete {report.complete}, failed (recorded) "
          f"{report.failed}; worker crashes isolated {report.crashes_isolated}; hangs stopped "
          f"{report.hangs_stopped}; scan time median {seconds[len(seconds) // 2]:.1f} s, max "
          f"{seconds[-1]:.1f} s; violations {len(report.violations)}")  # fmt: skip
    for violation in report.violations:
        print(f"  VIOLATION {violation}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--keep", type=Path, help="work folder to keep")
    parser.add_argument("--json", action="store_true", help="the figures as JSON")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="examkit-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        report = run(args.count, args.seed, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(report.__dict__))
    else:
        print_report(report)
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
