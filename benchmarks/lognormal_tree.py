#!/usr/bin/env python3
"""A second, independent shape of tree for the scan benchmark: file sizes drawn from a
log-normal distribution, as on a used disk (many small files, a long tail of large
ones), plus a few videos.

    lognormal_tree.py OUT_DIR [--seed N] [--count N] [--mu MU] [--sigma S]
                      [--videos N] [--video-mb MB] [--plan FILE]

make_tree.py (tests/fixtures) writes the benchmark's default tree: thousands of small
files and one large file. This one spreads the bytes over every size, so that no one
stream's digest ends the scan, and puts every file in a random folder of a random
tree. Kinds (by weight): prose (.txt, .log, .md), HTML, CSV, JSON, real JPEG and PNG
pictures (a small picture, then padding after its end marker up to the size drawn),
random binary, PDF-like text, and the videos (an MP4 `ftyp` box, then random bytes).
About 1% of the files get an alternate data stream and 1% are deleted.

It writes the same JSON plan as make_tree.py (what build_ntfs.sh and the benchmark's
hash-set library read): every file with its path, size, kind and digests, the
alternate data streams, the deletions. Deterministic for the same arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
from make_tree import WORDS, csv_content, json_content, picture, text_content

MIN_SIZE = 64  # the smallest file: tinier ones would often have the same bytes as another


def _padded(head: bytes, size: int, rng: random.Random) -> bytes:
    return head + rng.randbytes(max(0, size - len(head)))


def _html(rng: random.Random, size: int) -> bytes:
    top, end = (
        b"<!DOCTYPE html>\n<html><head><title>report</title></head><body>\n",
        b"</body></html>\n",
    )
    body = text_content(rng, max(32, size - len(top) - len(end))).replace(b"\n", b"<br>\n")
    return top + body + end


def _pdf(rng: random.Random, size: int) -> bytes:
    return b"%PDF-1.4\n" + text_content(rng, max(0, size - 9))


KINDS = (  # kind, extension, weight, content(rng, size)
    ("text", ".txt", 22, text_content),
    ("text", ".log", 6, text_content),
    ("markdown", ".md", 4, lambda rng, size: b"# Notes\n\n" + text_content(rng, size - 9)),
    ("html", ".html", 9, _html),
    ("csv", ".csv", 4, lambda rng, size: csv_content(rng, max(1, size // 28))),
    ("json", ".json", 4, lambda rng, size: json_content(rng, max(1, size // 64))),
    ("jpeg", ".jpg", 20, lambda rng, size: _padded(picture(rng, "jpeg"), size, rng)),
    ("png", ".png", 8, lambda rng, size: _padded(picture(rng, "png"), size, rng)),
    ("binary", ".bin", 15, lambda rng, size: rng.randbytes(size)),
    ("pdf", ".pdf", 8, _pdf),
)


def _folders(rng: random.Random, count: int) -> list[str]:
    folders = [""]
    for i in range(max(1, count // 25)):
        parent = rng.choice(folders)
        name = f"{rng.choice(WORDS)}-{i:04d}"
        folders.append(f"{parent}/{name}" if parent else name)
    return folders


def _entry(path: str, data: bytes, kind: str) -> dict[str, object]:
    return {
        "path": path, "size": len(data), "kind": kind,
        "md5": hashlib.md5(data).hexdigest(), "sha1": hashlib.sha1(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
    }  # fmt: skip


def _video(out: Path, path: str, size: int, rng: random.Random) -> dict[str, object]:
    """An MP4 ``ftyp`` box, then random bytes, written and hashed 16 MiB at a time."""
    digests = [hashlib.md5(), hashlib.sha1(), hashlib.sha256()]
    target = out / path
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as fh:
        chunk = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
        left = size - len(chunk)
        while chunk:
            fh.write(chunk)
            for d in digests:
                d.update(chunk)
            chunk = rng.randbytes(min(left, 16 << 20))
            left -= len(chunk)
    md5, sha1, sha256 = (d.hexdigest() for d in digests)
    return {"path": path, "size": size, "kind": "video", "md5": md5, "sha1": sha1,
            "sha256": sha256}  # fmt: skip


def build(out: Path, seed: int, count: int, mu: float, sigma: float, videos: int,
          video_mb: int) -> dict[str, object]:  # fmt: skip
    rng = random.Random(seed)
    folders = _folders(rng, count)
    weights = [k[2] for k in KINDS]
    files: list[dict[str, object]] = []

    def write(path: str, data: bytes, kind: str) -> None:
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        files.append(_entry(path, data, kind))

    for i in range(count):
        kind, ext, _, content = rng.choices(KINDS, weights)[0]
        size = max(MIN_SIZE, min(int(rng.lognormvariate(mu, sigma)), 64 << 20))
        folder = rng.choice(folders)
        write(f"{folder}/f{i:06d}{ext}".lstrip("/"), content(rng, size), kind)
    for j in range(videos):
        files.append(_video(out, f"{rng.choice(folders)}/video-{j:02d}.mp4".lstrip("/"),
                            rng.randint(video_mb // 2, video_mb) * 1_000_000, rng))  # fmt: skip
    regular = [f for f in files if f["kind"] != "video"]
    ads = []
    for f in rng.sample(regular, math.ceil(len(regular) / 100)):
        content = f"[ZoneTransfer]\nZoneId=3\nReferrerUrl=https://example.invalid/{f['md5']}\n"
        data = content.encode()
        ads.append({"path": f["path"], "stream": "Zone.Identifier", "content": content,
                    "size": len(data), "md5": hashlib.md5(data).hexdigest(),
                    "sha256": hashlib.sha256(data).hexdigest(), "on": "file"})  # fmt: skip
    with_ads = {a["path"] for a in ads}
    deleted = sorted(str(f["path"]) for f in rng.sample(
        [f for f in regular if f["path"] not in with_ads], len(regular) // 100))  # fmt: skip
    return {
        "generator": "examkit benchmarks/lognormal_tree.py",
        "seed": seed, "count": count, "mu": mu, "sigma": sigma,
        "files": files, "ads": ads, "delete": deleted, "deleted_files": deleted,
        "deleted_dirs": [], "after_delete": [], "expected_ntfs_orphans": [],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=6262)
    parser.add_argument("--count", type=int, default=6000, help="files besides the videos")
    parser.add_argument("--mu", type=float, default=9.5, help="log-normal mu (ln bytes)")
    parser.add_argument("--sigma", type=float, default=2.0, help="log-normal sigma")
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--video-mb", type=int, default=300, help="largest video (MB)")
    parser.add_argument("--plan", type=Path, help="write the JSON plan here (default: stdout)")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    plan = build(args.out_dir, args.seed, args.count, args.mu, args.sigma, args.videos,
                 args.video_mb)  # fmt: skip
    text = json.dumps(plan, indent=1, sort_keys=True)
    if args.plan:
        args.plan.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
