"""XFS written by mkfs.xfs itself, scanned through the libfsxfs walker.

``images/xfs/xfs.raw.gz`` (tests/fixtures/build_xfs_image.py) is a 300 MiB XFS v5 volume that
``mkfs.xfs -p PROTOFILE`` populated from a seeded tree: nested folders, text and binary
files, an empty file, a 200 KiB file in three extents stored out of order, a sparse
file, a leaf directory of 200 names, Unicode names and names with spaces, symbolic
links (one with its target in a block of its own) and a FIFO. ``images/xfs/expected.json``
holds what the SOURCE tree held (sizes, MD5 and SHA-256 by hashlib, link targets) and
each name's inode number as ``xfs_db`` (a second XFS reader) lists it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from examkit.scan import ScanOptions
from tests.conftest import FIXTURES, do_scan, file_rows, query, unpack

XFS = FIXTURES / "xfs"
EXPECTED: dict[str, Any] = json.loads((XFS / "expected.json").read_text("utf-8"))
FILES: dict[str, dict[str, Any]] = EXPECTED["files"]
NO_CONTENT = {"dirs": "dir", "symlinks": "link", "fifos": "fifo"}  # group -> meta_type


@pytest.fixture(scope="module")
def xfs_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 300 MiB image, unpacked (sparse) for this module only."""
    return unpack(XFS / "xfs.raw.gz", tmp_path_factory.mktemp("xfs-image"))


@pytest.fixture(scope="module")
def scanned(
    xfs_image: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, dict[str, Any]]]:
    case = tmp_path_factory.mktemp("xfs") / "case.sqlite"
    options = ScanOptions(workers=2, confirm_media=False)
    summary = do_scan(case, [xfs_image], options=options)
    assert summary.status == "complete", summary
    rows = file_rows(case)
    by_path = {r["path"]: r for r in rows}
    assert len(by_path) == len(rows), "a path recorded twice"
    return case, by_path


def test_the_xfs_walker_opened_the_volume(scanned: tuple[Path, dict[str, Any]]) -> None:
    case, rows = scanned
    fs = query(case, "SELECT walker, fs_type, status, error, offset, label, block_size,"
                     " block_count, entries FROM filesystems")  # fmt: skip
    blocks = EXPECTED["raw_size"] // EXPECTED["block_size"]
    assert fs == [("xfs", "xfs", "ok", None, 0, EXPECTED["label"], EXPECTED["block_size"],
                   blocks, len(rows))]  # fmt: skip
    assert query(case, "SELECT media_size, media_sha256 FROM evidence") == [
        (EXPECTED["raw_size"], EXPECTED["media_sha256"])
    ]


def test_every_source_file_at_its_path_with_its_size_and_hashes(
    scanned: tuple[Path, dict[str, Any]],
) -> None:
    _, rows = scanned
    assert len(FILES) == 219
    for path, facts in FILES.items():
        row = rows.get(path)
        assert row is not None, f"{path} not recorded"
        assert (row["meta_type"], row["status"], row["error"]) == ("file", "ok", None), path
        got = (row["size"], row["bytes_read"], row["md5"], row["sha256"])
        assert got == (facts["size"], facts["size"], facts["md5"], facts["sha256"]), path
        assert row["inode"] == facts["inode"], path
        assert (row["attr_type"], row["attr_id"], row["stream"]) == (1, 0, None), path


def test_the_hard_cases_are_among_them(scanned: tuple[Path, dict[str, Any]]) -> None:
    """Spelled out, so a change to the builder cannot quietly drop them."""
    _, rows = scanned
    big, sparse = FILES["/data/big.bin"], FILES["/data/sparse.bin"]
    assert big["size"] > 64 * 1024 and len(big["extents"]) == 3
    disk_order = sorted(big["extents"], key=lambda e: e[1])
    assert disk_order != big["extents"]  # logical order is not disk order
    (start, _, count), (after, _, _) = sparse["extents"]
    assert after > start + count  # a hole between the two extents: read as zeros
    assert rows["/data/empty.dat"]["size"] == 0
    assert rows["/data/empty.dat"]["md5"] == "d41d8cd98f00b204e9800998ecf8427e"
    hard_names = ["/with spaces/two words.txt", "/with spaces/a  b   c.txt",
                  "/with spaces/résumé final.txt", "/with spaces/sub dir/inner file.txt",
                  "/Unicode/Ünïcødé folder/inner.txt", "/Unicode/emoji-😀-smile.txt",
                  "/Unicode/日本語のファイル.txt",
                  "/docs/deep/level-2/level-3/level-4/level-5/leaf.txt"]  # fmt: skip
    for path in hard_names:
        assert rows[path]["status"] == "ok", path
        assert rows[path]["name"] == path.rsplit("/", 1)[1]
        assert rows[path]["path_bytes"] is None  # valid UTF-8: no raw copy needed
    assert sum(p.startswith("/many/") for p in rows) == 200  # a leaf directory, not short-form


def test_directories_links_and_the_fifo_are_recorded_without_content(
    scanned: tuple[Path, dict[str, Any]],
) -> None:
    _, rows = scanned
    for group, meta_type in NO_CONTENT.items():
        for path, facts in EXPECTED[group].items():
            row = rows.get(path)
            assert row is not None, f"{path} not recorded"
            assert (row["meta_type"], row["status"], row["md5"]) == (meta_type, "no_content", None)
            assert row["inode"] == facts["inode"], path
            if group == "symlinks":  # an XFS symlink's size is its target's length
                assert row["size"] == len(facts["target"].encode()), path
    assert len(EXPECTED["symlinks"]) == 4 and len(EXPECTED["dirs"]) == 14


def test_nothing_else_is_recorded(scanned: tuple[Path, dict[str, Any]]) -> None:
    _, rows = scanned
    known = {p for group in ("files", *NO_CONTENT) for p in EXPECTED[group]}
    assert set(rows) == known  # no stray rows: no '.', '..', root or extra file with content
    assert all(r["state"] == "allocated" and r["allocated"] == 1 for r in rows.values())
    assert sorted(r["seq"] for r in rows.values()) == list(range(len(rows)))


def test_times_are_the_frozen_build_clock(scanned: tuple[Path, dict[str, Any]]) -> None:
    """mkfs.xfs ran under faketime; its protofile code leaves every atime at 0 (no time)."""
    _, rows = scanned
    times = {(r["mtime"], r["ctime"], r["crtime"], r["atime"]) for r in rows.values()}
    assert times == {(EXPECTED["clock"],) * 3 + (None,)}
