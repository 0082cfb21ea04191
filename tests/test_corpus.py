"""The real images in ../shared/corpus agree with The Sleuth Kit's published oracle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CORPUS, ID_COLUMNS, comparable_rows, do_scan, file_rows, query, unpack
from tests.oracle import parse_fls, parse_hashes, parse_mmls, row_path

pytestmark = pytest.mark.corpus


def _summary() -> dict[str, Any]:
    path = CORPUS / "oracle" / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


SUMMARY = _summary()
# pytsk3 has no pool API (APFS) and TSK has no XFS: issue 10 adds libyal walkers.
# read by the libyal walkers, not TSK: their fls oracles need TSK's pool options (APFS) or do
# not exist (XFS); tests/test_fs_libyal.py checks them
LIBYAL = {"dfvfs-apfs.raw", "utillinux-xfs.img.xz"}
IMAGES = sorted(k for k in SUMMARY if k not in LIBYAL)
SPLIT_SECOND = {"dfvfs-image.raw.000", "plaso-image-split.E01"}


def _oracle_prefix(corpus_file: str, fs_args: str) -> str:
    base = Path(corpus_file).name
    if fs_args.startswith("-o "):
        return f"{base}.p{fs_args.split()[1]}"
    return base


def _scanned(corpus_file: str, unpacked: Path, tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    image = unpack(CORPUS / corpus_file, unpacked)
    case = tmp_path / "case.sqlite"
    summary = do_scan(case, [image])
    assert summary.status == "complete", summary
    return case, file_rows(case)


@pytest.mark.parametrize("corpus_file", IMAGES)
def test_every_fls_entry_and_icat_hash(
    corpus, unpacked: Path, tmp_path: Path, corpus_file: str
) -> None:
    case, rows = _scanned(corpus_file, unpacked, tmp_path)
    fs_rows = query(case, "SELECT filesystem_id, offset, fs_type, status FROM filesystems")
    by_offset = {off: (fid, typ, st) for fid, off, typ, st in fs_rows}
    checked = expected = skipped = 0
    for fs in SUMMARY[corpus_file]["filesystems"]:
        if fs.get("fls_rc") != 0:
            continue
        args = fs["fs_args"]
        sectors = int(args.split()[1]) if args.startswith("-o ") else 0
        unit = 512
        if sectors:
            unit, _ = parse_mmls(
                (CORPUS / "oracle" / f"{Path(corpus_file).name}.mmls.txt").read_text()
            )
        fs_id, _fs_type, status = by_offset[sectors * unit]
        assert status == "ok", f"file system at {sectors} not opened"
        mine = [r for r in rows if r["filesystem_id"] == fs_id]
        keys = {(row_path(r), r["inode"]) for r in mine}
        paths = {row_path(r) for r in mine}
        prefix = _oracle_prefix(corpus_file, args)
        fls = parse_fls((CORPUS / "oracle" / f"{prefix}.fls.txt").read_bytes())
        assert fls, prefix
        missing = [e for e in fls if (e.key not in keys and e.path not in paths)]
        assert not missing, f"{len(missing)} fls entries missing, e.g. {missing[:5]}"
        by_key = {}
        for r in mine:
            by_key.setdefault((row_path(r), r["inode"]), r)
        oracle = [
            h for h in parse_hashes(CORPUS / "oracle" / f"{prefix}.hashes.tsv") if not h.error
        ]
        expected += len(oracle)
        for h in oracle:
            inode = int(h.meta_addr.split("-")[0])
            row = by_key.get((h.path, inode))
            assert row is not None, f"{h.path} ({h.meta_addr}) not recorded"
            if h.status != "allocated" and row["status"] not in ("ok", "short"):
                skipped += 1  # deleted content we did not read (reallocated metadata)
                continue
            assert row["status"] in ("ok", "short"), (h.path, row["status"], row["error"])
            assert (row["bytes_read"], row["md5"], row["sha1"], row["sha256"]) == (
                h.size,
                h.md5,
                h.sha1,
                h.sha256,
            ), h.path
            checked += 1
    assert checked + skipped == expected
    assert skipped <= expected // 10, f"{skipped} deleted streams not read"


@pytest.mark.parametrize(
    "corpus_file", sorted(k for k in SUMMARY if SUMMARY[k].get("mmls_rc") == 0)
)
def test_volumes_match_mmls(corpus, unpacked: Path, tmp_path: Path, corpus_file: str) -> None:
    image = unpack(CORPUS / corpus_file, unpacked)
    case = tmp_path / "case.sqlite"
    do_scan(case, [image], workers=0)
    unit, rows = parse_mmls((CORPUS / "oracle" / f"{Path(corpus_file).name}.mmls.txt").read_text())
    size = image.stat().st_size
    expected = {(start * unit, desc) for start, _, desc in rows if start * unit < size}
    got = set(query(case, "SELECT start_offset, description FROM volumes"))
    assert expected <= got, expected - got


@pytest.mark.parametrize("corpus_file", sorted(k for k in SUMMARY if k.endswith(".E01")))
def test_e01_stored_hashes_verify(corpus, tmp_path: Path, corpus_file: str) -> None:
    case = tmp_path / "case.sqlite"
    summary = do_scan(case, [CORPUS / corpus_file], workers=1)
    ev = summary.evidence[0]
    assert ev.verification == "match", ev.verification_detail
    expect_segments = 2 if corpus_file in SPLIT_SECOND else 1
    (paths,) = query(case, "SELECT source_paths FROM evidence")[0]
    assert len(json.loads(paths)) == expect_segments
    img_stat = (CORPUS / "oracle" / f"{corpus_file}.img_stat.txt").read_text()
    (md5,) = query(case, "SELECT media_md5 FROM evidence")[0]
    assert md5 in img_stat


def test_split_raw_is_one_evidence_item(corpus, tmp_path: Path) -> None:
    case = tmp_path / "case.sqlite"
    summary = do_scan(case, [CORPUS / "dfvfs-image.raw.000"], workers=1)
    assert len(summary.evidence) == 1
    assert summary.evidence[0].container == "split-raw"
    (md5,) = query(case, "SELECT media_md5 FROM evidence")[0]
    assert md5 == "a528fc1bec79f4fef062f2bf1008c045"  # MANIFEST: concatenated md5


@pytest.mark.parametrize(
    ("raw", "ewf"),
    [
        ("pytsk-image.raw", "plaso-image.E01"),
        ("tsk-image.dd", "tsk-image.E01"),
        ("pytsk-tsk_volume_system.raw", "plaso-image-split.E01"),
    ],
)
def test_raw_and_e01_give_identical_rows(corpus, tmp_path: Path, raw: str, ewf: str) -> None:
    def rows(name: str) -> list[tuple[Any, ...]]:
        case = tmp_path / f"{name}.sqlite"
        do_scan(case, [CORPUS / name], workers=1)
        return comparable_rows(case, ID_COLUMNS | {"parent_file_id"})

    assert rows(raw) == rows(ewf)


def test_unknown_file_system_is_recorded_and_scan_goes_on(tmp_path: Path) -> None:
    """A volume no walker recognises (here: random bytes) is an error row; the scan completes."""
    import random

    image = tmp_path / "unknown.raw"
    image.write_bytes(random.Random(10).randbytes(4 << 20))
    case = tmp_path / "case.sqlite"
    summary = do_scan(case, [image], workers=1)
    assert summary.status == "complete"
    ((status, error),) = query(case, "SELECT status, error FROM filesystems")
    assert status == "error" and error
