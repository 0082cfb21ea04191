"""A seizure of photos: examkit against fiwalk on an NTFS image of ~2 GB of JPEGs.

    make bench-photos               # builds the image (~1 min), then measures

The image a child-exploitation examiner most often meets is folders of camera
pictures, not one huge file nor thousands of text files. This builds one with real
tools: seeded JPEGs of camera sizes (Pillow; a few pictures encoded, each file then
made distinct by a COM segment holding its number, so every file is a valid JPEG with
digests of its own), copied into an NTFS volume with mkntfs + ntfs-3g
(tests/fixtures/build_ntfs.sh). With the page cache warm it times, in interleaved
pairs (``--runs``), `fiwalk -X` (MD5 + SHA-1) and `examkit scan --no-verify
--no-perceptual` (MD5 + SHA-1 + SHA-256 + type), and prints each ratio; then one
`examkit scan --no-verify`, whose perceptual hashes (PDQ, pHash, dHash of every
picture) are what a full scan adds here. The two scans must give the same SHA-256
for every file, and fiwalk the same MD5 as examkit.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import sqlite3
import statistics
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
from scan_vs_fiwalk import FIXTURES

SIZES = ((4032, 3024), (3264, 2448), (2592, 1944), (2048, 1536))  # camera pictures


def _pictures(rng: random.Random, count: int) -> list[bytes]:
    """``count`` JPEGs: smooth gradients with sensor-like noise, of camera sizes."""
    import numpy as np
    from PIL import Image

    gen = np.random.default_rng(rng.randrange(1 << 32))
    out = []
    for i in range(count):
        w, h = SIZES[i % len(SIZES)]
        x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
        y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
        channels = (180 * x + 40 * y, 120 * y + 60 + 0 * x, 200 * (1 - x) * y + 20)
        base = np.stack([np.broadcast_to(c, (h, w)) for c in channels], axis=-1)
        noise = gen.standard_normal((h, w, 3), dtype=np.float32) * 12
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def _distinct(jpeg: bytes, number: int) -> bytes:
    """The JPEG with a COM segment naming it after its JFIF header: a file of its own."""
    at = 4 + int.from_bytes(jpeg[4:6], "big") if jpeg[2:4] == b"\xff\xe0" else 2
    text = f"examkit benchmark photo {number:06d}".encode()
    return jpeg[:at] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[at:]


def build_image(work: Path, seed: int, total_mb: int) -> Path:
    image = work / f"photos-{seed}-{total_mb}mb.raw"
    if image.exists():
        return image
    rng = random.Random(seed)
    bases = _pictures(rng, 8)
    tree = work / "photos-src"
    shutil.rmtree(tree, ignore_errors=True)
    written, number = 0, 0
    while written < total_mb * 1_000_000:
        data = _distinct(bases[rng.randrange(len(bases))], number)
        folder = tree / "DCIM" / f"{100 + number // 250:03d}CANON"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"IMG_{number:05d}.JPG").write_bytes(data)
        written += len(data)
        number += 1
    plan = work / "photos-plan.json"
    plan.write_text(json.dumps({"ads": [], "delete": [], "after_delete": []}))
    size_mb = int(written / 1_000_000 * 1.08) + 64
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run(["bash", str(FIXTURES / "build_ntfs.sh"), str(tree), str(plan), str(image),
                    str(size_mb)], check=True, env=env)  # fmt: skip
    shutil.rmtree(tree)
    return image


def _case_digests(case: Path, column: str) -> dict[str, str]:
    conn = sqlite3.connect(f"file:{case}?mode=ro", uri=True)
    try:
        rows = conn.execute(f"SELECT path, {column} FROM files WHERE path LIKE '%.JPG'"
                            " AND stream IS NULL")  # fmt: skip
        return {path: value for path, value in rows}
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=924)
    parser.add_argument("--total-mb", type=int, default=2000, help="bytes of pictures (MB)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved fiwalk/examkit pairs")
    parser.add_argument("--work", type=Path, help="folder to keep (image reused if present)")
    args = parser.parse_args()
    if missing_tool("fiwalk", "mkntfs", "ntfs-3g"):
        return 2
    work = work_folder(args.work, "examkit-bench-photos-")
    compile_bytecode()
    try:
        t = time.perf_counter()
        image = build_image(work, args.seed, args.total_mb)
        print(f"image {image} ({image.stat().st_size / 1e9:.2f} GB) ready in"
              f" {time.perf_counter() - t:.0f} s")  # fmt: skip
        with open(image, "rb") as fh:  # page cache warm for both tools
            while fh.read(16 << 20):
                pass
        (work / "library").mkdir(exist_ok=True)
        env = {**os.environ, "EXAMKIT_HASHSETS": str(work / "library")}
        xml, case = work / "fiwalk.xml", work / "case.sqlite"

        def scan(extra: list[str]) -> tuple[float, dict[str, str]]:
            for leftover in work.glob("case.sqlite*"):
                leftover.unlink()
            command = [EXAMKIT, "scan", str(image), "--case", str(case), "--json", *extra]
            wall = measure_tree(command, env, work / "scan.json", sample=False)[0]
            return wall, _case_digests(case, "sha256")

        pairs = []
        for _ in range(args.runs):
            xml.unlink(missing_ok=True)
            theirs = measure_tree(["fiwalk", "-X", str(xml), str(image)], sample=False)[0]
            ours, plain = scan(["--no-verify", "--no-perceptual"])
            pairs.append((theirs, ours))
        md5_theirs = {path: d["md5"] for path, d in fiwalk_digests(xml).items()
                      if path.endswith(".JPG") and d.get("md5")}  # fmt: skip
        md5_ours = _case_digests(case, "md5")
        failed = not md5_ours or md5_theirs != md5_ours
        perceptual, with_images = scan(["--no-verify"])
        failed = failed or with_images != plain
        hashed = json.loads((work / "scan.json").read_text())["evidence"][0]
        print(
            f"{len(plain):,} JPEGs, {hashed['bytes_hashed'] / 1e9:.2f} GB hashed;"
            f" MD5 {'equal to' if not failed else 'DIFFERENT FROM'} fiwalk's for every one"
        )
        print(f"{'pair':>4} {'fiwalk -X':>10} {'examkit':>9} {'ratio':>7}"
              "   (examkit scan --no-verify --no-perceptual)")  # fmt: skip
        for i, (theirs, ours) in enumerate(pairs, 1):
            print(f"{i:>4} {theirs:9.2f}s {ours:8.2f}s {ours / theirs:6.2f}x")
        f_med = statistics.median(p[0] for p in pairs)
        e_med = statistics.median(p[1] for p in pairs)
        print(f"medians: fiwalk {f_med:.2f} s, examkit {e_med:.2f} s, {e_med / f_med:.2f}x")
        per_picture = (perceptual - e_med) / max(1, len(plain)) * 1000
        print(f"examkit scan --no-verify (+ PDQ, pHash, dHash of every picture):"
              f" {perceptual:.2f} s = {perceptual / f_med:.2f}x fiwalk; the perceptual hashes"
              f" add {per_picture:.1f} ms of wall per picture")  # fmt: skip
        print("target (issue 5): <= 0.5x fiwalk")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
