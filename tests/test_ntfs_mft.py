"""The largest NTFS files, found in the MFT before the directory walk, and listed first
(``examkit_plugins.filesystems.ntfs_mft``, ``TskFileSystem.entries``). Oracles: The Sleuth
Kit's ``fls -l`` (sizes and paths) and ``istat`` (a record's parent and size)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import pytsk3

from examkit_plugins.filesystems import ntfs_mft, tsk
from examkit_plugins.filesystems.ntfs_mft import (
    MftReader,
    header_pattern,
    large_files,
    parse_record,
    record_size,
)
from examkit_plugins.filesystems.tsk import TskFileSystem

pytestmark = pytest.mark.skipif(
    shutil.which("fls") is None or shutil.which("istat") is None,
    reason="The Sleuth Kit not installed",
)

SMALL = 1 << 12  # the fixtures' files are small: every non-resident one is "large" here
DEMO_NTFS_SECTOR = 2048  # demo-disk.raw: NTFS partition (tests/fixtures/images/MANIFEST.md)


def _fs(image: Path, sector: int = 0) -> Any:
    return pytsk3.FS_Info(pytsk3.Img_Info(str(image)), offset=sector * 512)


def fls_files(image: Path, sector: int = 0) -> dict[int, tuple[int, set[str]]]:
    """Allocated regular files reachable from the root, as ``fls -r -p -l`` lists them:
    inode -> (size of the unnamed $DATA, every path)."""
    done = subprocess.run(["fls", "-r", "-p", "-l", "-o", str(sector), str(image)],
                          capture_output=True, check=True)  # fmt: skip
    files: dict[int, tuple[int, set[str]]] = {}
    for line in done.stdout.decode("utf-8", "surrogateescape").splitlines():
        m = re.match(r"r/r (\d+)-128-\d+:\t([^\t]*)\t(?:[^\t]*\t){4}(\d+)\t", line)
        if not m or ":" in m[2] or m[2].startswith("$OrphanFiles/"):
            continue  # deleted (marked '*'), not a file, a named stream, or an orphan
        inode, path, size = int(m[1]), "/" + m[2], int(m[3])
        files.setdefault(inode, (size, set()))[1].add(path)
    return files


@pytest.mark.parametrize(("name", "sector"), [("ntfs.raw", 0), ("demo-disk.raw", DEMO_NTFS_SECTOR)])
def test_the_largest_files_and_their_paths_are_those_fls_lists(
    fixture_images: Path, name: str, sector: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tsk, "EARLY_SIZE", SMALL)
    image = fixture_images / name
    oracle = fls_files(image, sector)
    want = sorted((-size, inode) for inode, (size, _) in oracle.items() if size >= SMALL)
    assert len(want) >= 3, "the fixture should hold files of 4 KiB or more"
    found = large_files(_fs(image, sector), SMALL)
    assert [inode for inode, _ in found] == [inode for _, inode in want][: ntfs_mft.MAX_FILES]
    walker = TskFileSystem(_fs(image, sector), sector * 512, "ntfs")
    first = list(walker._large_first(int(walker._fs.info.root_inum)))
    assert [int(f.info.meta.addr) for _, f in first] == [inode for inode, _ in found]
    for path, f in first:
        assert path.decode("utf-8", "surrogateescape") in oracle[int(f.info.meta.addr)][1]


def _plain(entries: list[Any]) -> list[tuple[Any, ...]]:
    return sorted(tuple(e)[1:] for e in entries)  # every field but seq


def test_the_listing_lists_the_largest_files_first_and_the_same_rows(
    fixture_images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = fixture_images / "ntfs.raw"
    monkeypatch.setattr(tsk, "EARLY_SIZE", SMALL)
    rows = list(TskFileSystem(_fs(image), 0, "ntfs").entries())
    monkeypatch.setattr(tsk, "large_files", lambda fs, size: [])
    plain = list(TskFileSystem(_fs(image), 0, "ntfs").entries())
    assert _plain(rows) == _plain(plain)  # the same rows, in another order
    assert [e.seq for e in rows] == list(range(len(rows)))
    first = [inode for inode, _ in large_files(_fs(image), SMALL)]
    listed = []  # the entries' inodes in listing order, each once
    for e in rows:
        if e.inode not in listed:
            listed.append(e.inode)
    assert listed[: len(first)] == first
    assert rows[0].size == max(e.size for e in rows if e.stream is None and e.status == "pending")


def test_a_record_read_as_istat_reads_it(fixture_images: Path) -> None:
    image = fixture_images / "ntfs.raw"
    reader = MftReader(_fs(image))
    assert reader.record == 1024  # mkntfs's default
    inode, _ = large_files(_fs(image), SMALL)[0]
    record = reader.read(inode)
    text = subprocess.run(["istat", str(image), str(inode)], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip
    parent = re.search(r"Parent MFT Entry: (\d+)", text)
    size = re.search(r"\$DATA \(128-\d+\)\s+Name: N/A\s+Non-Resident\s+size: (\d+)", text)
    assert record is not None and parent and size
    assert (record.parent, record.size) == (int(parent[1]), int(size[1]))
    assert record.in_use and not record.directory and record.base == 0
    root = reader.read(ntfs_mft.ROOT_INODE)
    assert root is not None and root.directory and root.parent == ntfs_mft.ROOT_INODE


def test_a_torn_record_or_other_bytes_are_not_read(fixture_images: Path) -> None:
    reader = MftReader(_fs(fixture_images / "ntfs.raw"))
    inode, _ = large_files(_fs(fixture_images / "ntfs.raw"), SMALL)[0]
    raw = bytearray(reader.mft.read_random(inode * reader.record, reader.record))
    assert parse_record(bytes(raw), inode) is not None
    raw[510] ^= 0xFF  # a sector of the record not written with the others
    assert parse_record(bytes(raw), inode) is None
    assert parse_record(bytes(1024), inode) is None
    with pytest.raises(ValueError):
        record_size(bytes(512))


def _record(size: int, at: int, usn: bytes = b"\x07\x00") -> bytes:
    """A 1 KiB MFT record of an in-use file (parent: the root) whose unnamed non-resident
    $DATA header starts at ``at`` and gives ``size``, as written on disk (update
    sequence applied)."""
    data = bytearray(1024)
    data[0:4] = b"FILE"
    data[4:6], data[6:8] = (0x30).to_bytes(2, "little"), (3).to_bytes(2, "little")
    data[0x16:0x18] = (1).to_bytes(2, "little")  # in use, not a folder
    data[0x14:0x16] = (0x38).to_bytes(2, "little")
    name = 0x38  # $FILE_NAME, resident, content at +0x18: parent reference first
    data[name : name + 4] = (0x30).to_bytes(4, "little")
    data[name + 4 : name + 8] = (0x68).to_bytes(4, "little")
    data[name + 0x14 : name + 0x16] = (0x18).to_bytes(2, "little")
    data[name + 0x18 : name + 0x1E] = ntfs_mft.ROOT_INODE.to_bytes(6, "little")
    data[name + 0x18 + 0x41] = 1  # Win32 name
    gap = name + 0x68
    data[gap : gap + 4] = (0x10).to_bytes(4, "little")  # a filler attribute up to ``at``
    data[gap + 4 : gap + 8] = (at - gap).to_bytes(4, "little")
    data[at : at + 4] = (0x80).to_bytes(4, "little")
    data[at + 4 : at + 8] = (0x48).to_bytes(4, "little")
    data[at + 8], data[at + 9] = 1, 0  # non-resident, no name
    data[at + 0x30 : at + 0x38] = size.to_bytes(8, "little")
    end = at + 0x48
    data[end : end + 4] = (ntfs_mft.END).to_bytes(4, "little")
    data[0x30:0x32] = usn
    for k in (1, 2):  # each sector's last two bytes go to the array; the USN takes their place
        data[0x30 + 2 * k : 0x32 + 2 * k] = data[k * 512 - 2 : k * 512]
        data[k * 512 - 2 : k * 512] = usn
    return bytes(data)


@pytest.mark.parametrize("at", [0x200, 504 - 0x30, 0x300])
def test_a_size_across_a_sector_end_is_read_after_the_update_sequence(at: int) -> None:
    """At 504 - 0x30 the size's top two bytes are the sector's last two: on disk they hold
    the update sequence number, and the search still finds the record."""
    size = 3 << 30
    raw = _record(size, at)
    record = parse_record(raw, 42)
    assert record is not None and (record.size, record.parent) == (size, ntfs_mft.ROOT_INODE)
    assert [m.start() for m in header_pattern(25).finditer(raw)] == [at]
    assert not header_pattern(33).search(_record(size, 0x200))  # 3 GiB < 2**33


def test_header_patterns_match_sizes_from_their_power_of_two() -> None:
    def header(size: int) -> bytes:
        return b"\x80\x00\x00\x00\x48\x00\x00\x00\x01\x00" + bytes(38) + size.to_bytes(8, "little")

    for bits in (0, 7, 8, 12, 25, 31, 32, 48, 63):
        pattern = header_pattern(bits)
        for size in (0, 1, (1 << bits) - 1, 1 << bits, (1 << bits) + 1, 1 << 63, (1 << 64) - 1):
            assert bool(pattern.fullmatch(header(size))) == (size >= 1 << bits), (bits, size)
    named = bytearray(header(1 << 40))
    named[9] = 4  # a named stream (an ADS): not the file's own content
    assert not header_pattern(25).search(bytes(named))


def test_no_hint_on_errors_or_a_very_large_mft(
    fixture_images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Broken:
        def open_meta(self, inode: int) -> Any:
            raise OSError("cannot read")

    assert large_files(Broken()) == []
    monkeypatch.setattr(ntfs_mft, "MAX_MFT_BYTES", 1024)
    assert large_files(_fs(fixture_images / "ntfs.raw"), SMALL) == []
