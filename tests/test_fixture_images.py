"""Fixture images built with real tools: every fls entry recorded, every stream equal to icat."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, comparable_rows, do_scan, file_rows, query
from tests.oracle import digests, icat, parse_mmls, row_path, run_fls

pytestmark = pytest.mark.skipif(shutil.which("fls") is None, reason="The Sleuth Kit not installed")
RAW = sorted(p.name[: -len(".gz")] for p in FIXTURES.glob("*.raw.gz"))


def filesystem_offsets(image: Path) -> list[int]:
    """Sector offsets of the file systems TSK itself finds (mmls, then fsstat)."""
    done = subprocess.run(["mmls", str(image)], capture_output=True, text=True)
    if done.returncode != 0:
        return [0]
    _, rows = parse_mmls(done.stdout)
    offsets = []
    for start, _, desc in rows:
        if desc.startswith(("Primary Table", "Unallocated", "Extended Table", "GPT", "Safety")):
            continue
        if "Extended" in desc:
            continue
        ok = subprocess.run(["fsstat", "-o", str(start), str(image)], capture_output=True)
        if ok.returncode == 0:
            offsets.append(start)
    return offsets


def check_against_tsk(image: Path, case: Path) -> int:
    """Assert every fls entry is recorded and every content stream equals icat; count checks."""
    rows = file_rows(case)
    fs_by_offset = dict(query(case, "SELECT offset, filesystem_id FROM filesystems"))
    checked = 0
    offsets = filesystem_offsets(image)
    assert offsets
    for sectors in offsets:
        fs_id = fs_by_offset[sectors * 512]
        mine = [r for r in rows if r["filesystem_id"] == fs_id]
        by_key: dict[tuple[str, Any], dict[str, Any]] = {}
        for r in mine:
            by_key.setdefault((row_path(r), r["inode"]), r)
        paths = {row_path(r) for r in mine}
        for entry in run_fls(image, sectors or None):
            assert entry.key in by_key or entry.path in paths, entry
            if entry.mtype not in ("r", "v") or entry.addr == 0 or entry.key not in by_key:
                continue
            row = by_key[entry.key]
            addr = str(entry.addr)
            if entry.attr_type is not None:
                addr += f"-{entry.attr_type}-{entry.attr_id}"
            if row["status"] == "error":
                # recorded as unreadable: TSK's own icat must fail on it too
                with pytest.raises(subprocess.CalledProcessError):
                    icat(image, addr, sectors or None)
                checked += 1
                continue
            if row["status"] not in ("ok", "short"):
                assert entry.deleted, (entry, row["status"], row["error"])
                continue
            data = icat(image, addr, sectors or None)
            assert (row["md5"], row["sha1"], row["sha256"]) == digests(data), entry.path
            assert row["bytes_read"] == len(data)
            checked += 1
    return checked


@pytest.mark.parametrize("name", RAW)
def test_fixture_image_agrees_with_fls_and_icat(
    fixture_images: Path, tmp_path: Path, name: str
) -> None:
    image = fixture_images / name
    case = tmp_path / "case.sqlite"
    summary = do_scan(case, [image])
    assert summary.status == "complete"
    assert query(case, "SELECT count(*) FROM filesystems WHERE status != 'ok'") == [
        (0,)
    ] or name in (
        "mbr.raw",
        "gpt.raw",
        "demo-disk.raw",
    )
    assert check_against_tsk(image, case) > 0


@pytest.mark.parametrize(
    ("raw", "others"),
    [("ntfs.raw", ["ntfs.E01", "ntfs.raw.001"]), ("fat16.raw", ["fat16-alpha.raw.aa"])],
)
def test_e01_and_split_give_the_same_rows_as_raw(
    fixture_images: Path, tmp_path: Path, raw: str, others: list[str]
) -> None:
    reference = tmp_path / "raw.sqlite"
    do_scan(reference, [fixture_images / raw])
    expected = comparable_rows(reference)
    assert len(expected) > 20
    (media,) = query(reference, "SELECT media_sha256 FROM evidence")[0]
    for other in others:
        case = tmp_path / f"{other}.sqlite"
        summary = do_scan(case, [fixture_images / other])
        assert comparable_rows(case) == expected, other
        assert query(case, "SELECT media_sha256 FROM evidence")[0][0] == media
        if other.endswith(".E01"):
            assert summary.evidence[0].verification == "match"
            assert len(query(case, "SELECT source_paths FROM evidence")[0][0].split(",")) == 3


def test_ntfs_fixture_special_cases(fixture_images: Path, tmp_path: Path) -> None:
    case = tmp_path / "case.sqlite"
    do_scan(case, [fixture_images / "ntfs.raw"])
    rows = file_rows(case)
    streams = [r for r in rows if r["stream"] and not r["path"].startswith("/$")]
    assert any(r["meta_type"] == "dir" for r in streams), "ADS on a directory"
    assert any(r["meta_type"] == "file" for r in streams), "ADS on a file"
    assert any(r["state"] == "deleted" for r in rows)
    assert any(r["extension_mismatch"] == 1 for r in rows)
    assert all(r["md5"] is None or (len(r["md5"]) == 32 and r["md5"].islower()) for r in rows)
    assert all(t is None or t.endswith("Z") for r in rows for t in (r["mtime"], r["crtime"]))


def test_ext4_invalid_utf8_name_keeps_its_bytes(fixture_images: Path, tmp_path: Path) -> None:
    case = tmp_path / "case.sqlite"
    do_scan(case, [fixture_images / "ext4.raw"])
    raw = [r for r in file_rows(case) if r["name_bytes"]]
    assert any(r["name_bytes"] == b"bad-\xff\xfe-name.txt" for r in raw)
    for r in raw:
        assert r["path_bytes"].endswith(r["name_bytes"])
