"""APFS and XFS through the libyal walkers, checked against TSK's pool oracle and TSK's HFS+."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyfsapfs
import pytest

from examkit.evidence import open_media
from examkit.layers import RegionFile, parse_unlock
from examkit.models import Volume
from examkit.plugins import registry
from examkit.scan import ScanOptions, scan
from examkit.walk import NotRecognised, open_filesystem
from examkit_plugins.filesystems import apfs as apfs_plugin
from examkit_plugins.filesystems.apfs import ApfsWalker
from examkit_plugins.filesystems.xfs import XfsWalker
from tests.conftest import file_rows, query, unpack
from tests.oracle import digests, parse_fls, parse_hashes

pytestmark = pytest.mark.corpus

APFS = "dfvfs-apfs.raw"
POOL = "dfvfs-apfs.raw.pool-apfs-B107"
RSRC = b"My resource fork\n"  # dfvfs HFSImageFileTestCase
SAME_FILES = ("passwords.txt", "a_directory/a_file", "a_directory/another_file")


def _scan(case: Path, image: Path) -> list[dict[str, Any]]:
    summary = scan(
        case, [image], examiner="pytest", argv=["pytest"],
        options=ScanOptions(workers=2, confirm_media=False),
    )  # fmt: skip
    assert summary.status == "complete", summary
    return file_rows(case)


def _by_path(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["path"]: r for r in rows}


@pytest.fixture(scope="module")
def apfs_scan(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    case = tmp_path_factory.mktemp("apfs") / "case.sqlite"
    return case, _scan(case, corpus / APFS)


def test_apfs_filesystem_row(apfs_scan: tuple[Path, list[Any]]) -> None:
    case, _ = apfs_scan
    rows = query(case, "SELECT walker, fs_type, status, error, label, block_size FROM filesystems")
    assert rows == [("apfs", "apfs", "ok", None, "apfs_test", 4096)]
    ((details,),) = query(case, "SELECT details FROM filesystems")
    (volume,) = json.loads(details)["volumes"]  # block and xid as TSK's fsstat -P apfs says
    assert (volume["name"], volume["superblock_block"], volume["xid"]) == ("apfs_test", 107, 4)
    assert (volume["snapshot_count"], volume["snapshots"]) == (0, [])


def test_apfs_every_fls_entry_and_icat_hash(
    corpus: Path, apfs_scan: tuple[Path, list[Any]]
) -> None:
    _, rows = apfs_scan
    by_path = _by_path(rows)
    fls = parse_fls((corpus / "oracle" / f"{POOL}.fls.txt").read_bytes())
    assert len(fls) == 10
    for entry in fls:
        row = by_path["/apfs_test" + entry.path]
        assert row["inode"] == entry.addr, entry
        assert row["meta_type"] == {"r": "file", "d": "dir", "l": "link"}[entry.mtype]
        assert row["state"] == "allocated" and row["allocated"] == 1
    hashed = 0
    for oracle in parse_hashes(corpus / "oracle" / f"{POOL}.hashes.tsv"):
        row = by_path["/apfs_test" + oracle.path]
        assert row["inode"] == int(oracle.meta_addr)
        if oracle.error:  # a_resourcefork: no data fork, TSK's icat fails
            assert (row["size"], row["status"]) == (0, "ok")
            continue
        assert row["status"] == "ok", row
        got = (row["size"], row["md5"], row["sha1"], row["sha256"])
        assert got == (oracle.size, oracle.md5, oracle.sha1, oracle.sha256), oracle.path
        hashed += 1
    assert hashed == 6
    # only what fls lists, plus the volume's directory row and the resource fork
    listed = {"/apfs_test" + e.path for e in fls}
    extra = {r["path"] for r in rows if r["path"] not in listed and "!/" not in r["path"]}
    assert extra == {
        "/apfs_test", "/apfs_test/a_directory/a_resourcefork:RSRC",
        "/apfs_test:purgeable-drecs-fixed", "/apfs_test/a_link:com.apple.fs.symlink",
        "/apfs_test/a_directory/a_file:myxattr",
    }  # fmt: skip


def test_apfs_rows_follow_tsk_conventions(apfs_scan: tuple[Path, list[Any]]) -> None:
    _, rows = apfs_scan
    by_path = _by_path(rows)
    fork = by_path["/apfs_test/a_directory/a_resourcefork:RSRC"]
    assert (fork["stream"], fork["attr_type"], fork["size"]) == ("rsrc", 4353, len(RSRC))
    assert (fork["md5"], fork["sha1"], fork["sha256"]) == digests(RSRC)
    link = by_path["/apfs_test/a_link"]
    assert (link["status"], link["md5"]) == ("no_content", None)
    pw = by_path["/apfs_test/passwords.txt"]
    assert pw["mtime"] == "2022-01-14T07:19:41.213333494Z"  # fls -l: 07:19:41 (UTC)
    assert all(r["atime"] and r["crtime"] for r in rows if r["inode"])
    seqs = [r["seq"] for r in rows if r["inode"]]
    assert seqs == list(range(len(seqs)))


def _tsk_attributes(cmd: list[str], inode: int) -> list[tuple[int, int, str]]:
    """``(type, id, name)`` of each RSRC/ExATTR attribute ``istat`` lists for an inode."""
    out = subprocess.run([*cmd, str(inode)], capture_output=True, check=True).stdout.decode()
    found = re.findall(r"Type: (?:RSRC|ExATTR) \((\d+)-(\d+)\)\s+Name: (\S+)", out)
    return [(int(t), int(i), n) for t, i, n in found]


@pytest.mark.skipif(shutil.which("istat") is None, reason="The Sleuth Kit not installed")
@pytest.mark.parametrize(("image", "pool", "top"), [
    (APFS, ["-P", "apfs", "-B", "107"], "/apfs_test"), ("dfvfs-hfsplus.raw", [], ""),
])  # fmt: skip
def test_extended_attributes_are_streams_equal_to_icat(
    corpus: Path, tmp_path: Path, image: str, pool: list[str], top: str
) -> None:
    """Every resource fork and extended attribute TSK's istat lists (APFS through its pool
    layer, HFS+ directly) is a stream row, its content equal to what icat extracts."""
    rows = _scan(tmp_path / "case.sqlite", corpus / image)
    streams = {(r["inode"], r["stream"]): r for r in rows if r["stream"] and "!/" not in r["path"]}
    expected = {}
    for inode in sorted({r["inode"] for r in rows if r["inode"] and "!/" not in r["path"]}):
        for atype, aid, name in _tsk_attributes(["istat", *pool, str(corpus / image)], inode):
            data = subprocess.run(["icat", *pool, str(corpus / image), f"{inode}-{atype}-{aid}"],
                                  capture_output=True, check=True).stdout  # fmt: skip
            stream = "rsrc" if atype == 4353 else name
            expected[(inode, stream)] = (atype, len(data), digests(data))
    assert len(expected) == (4 if pool else 2)
    assert {k: (r["attr_type"], r["size"], (r["md5"], r["sha1"], r["sha256"]))
            for k, r in streams.items()} == expected  # fmt: skip
    myxattr = next(r for k, r in streams.items() if k[1] == "myxattr")
    assert myxattr["path"] == f"{top}/a_directory/a_file:myxattr"


def test_apfs_hashes_match_tsk_read_hfsplus(
    corpus: Path, apfs_scan: tuple[Path, list[Any]], tmp_path: Path
) -> None:
    """The same files on HFS+, read by TSK, are an independent oracle."""
    _, rows = apfs_scan
    apfs_rows = _by_path(rows)
    hfs_rows = _by_path(_scan(tmp_path / "hfs.sqlite", corpus / "dfvfs-hfsplus.raw"))
    for name in (*SAME_FILES, "a_directory/a_resourcefork:RSRC", "a_directory/a_file:myxattr"):
        a, h = apfs_rows[f"/apfs_test/{name}"], hfs_rows[f"/{name}"]
        assert (a["size"], a["md5"], a["sha256"]) == (h["size"], h["md5"], h["sha256"]), name
        assert a["stream"] == h["stream"]
    assert apfs_rows["/apfs_test/passwords.txt"]["md5"].startswith("39cb0970")


def test_apfs_read_directly(corpus: Path) -> None:
    media = open_media(registry().get("containers", "raw"), [corpus / APFS])
    fs = ApfsWalker().open(media, 0, media.size)
    try:
        assert b"".join(fs.read(19, 4352, 0, 22)) == b"This is another file.\n"
        assert b"".join(fs.read(23, 4353, 0, 17)) == RSRC
    finally:
        fs.close()
        media.close()


class _Locked:
    def is_locked(self) -> bool:
        return True

    def get_name(self) -> str:
        return "secret"

    def get_identifier(self) -> str:
        return "0a1b2c3d-0000-4000-8000-00000000abcd"


PASSWORD = "correct horse battery"


class _Encrypted:
    """An encrypted APFS volume (no tool here makes one): locked until it is given
    ``PASSWORD``, then the corpus image's real volume, read by libfsapfs."""

    def __init__(self, real: Any) -> None:
        self._real, self._password, self._locked = real, None, True

    def __getattr__(self, name: str) -> Any:  # everything else: the real volume
        return getattr(self._real, name)

    def is_locked(self) -> bool:
        return self._locked

    def get_identifier(self) -> str:
        return "0a1b2c3d-0000-4000-8000-00000000abcd"

    def set_password(self, password: str) -> None:
        self._password = password

    def set_recovery_password(self, key: str) -> None:
        self._password = None

    def unlock(self) -> bool:
        self._locked = self._password != PASSWORD
        return not self._locked


def _encrypted_container() -> Any:
    class Container:
        def __init__(self) -> None:
            self._real = pyfsapfs.container()
            self._volume: Any = None

        def open_file_object(self, file: Any) -> None:
            self._real.open_file_object(file)
            self._volume = _Encrypted(self._real.get_volume(0))

        def get_number_of_volumes(self) -> int:
            return 1

        def get_volume(self, index: int) -> Any:
            return self._volume

        def close(self) -> None:
            self._real.close()

    return Container


class _LockedContainer:
    def open_file_object(self, file: Any) -> None:
        assert file.get_size() > 0

    def get_number_of_volumes(self) -> int:
        return 1

    def get_volume(self, index: int) -> _Locked:
        return _Locked()

    def close(self) -> None:
        pass


def test_apfs_locked_volumes(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A locked volume is an error row; a container of locked volumes an error file system."""
    media = open_media(registry().get("containers", "raw"), [corpus / APFS])
    head = media.read(0, 4096)
    region = RegionFile(media, 0, media.size)
    fs = apfs_plugin.ApfsFileSystem(_LockedContainer(), region, 0, head)
    (row,) = list(fs.entries())
    assert (row.path, row.meta_type, row.status) == ("/secret", "dir", "error")
    assert row.error is not None and "locked" in row.error
    monkeypatch.setattr(apfs_plugin, "pyfsapfs", SimpleNamespace(container=_LockedContainer))
    volume = Volume(index=0, kind="whole", start=0, length=media.size)
    attempt = open_filesystem(media, volume, [ApfsWalker()])
    media.close()
    assert attempt.handle is None and attempt.error is not None
    assert "encrypted and locked" in attempt.error


@pytest.mark.parametrize(
    ("walker", "image"),
    [(XfsWalker(), "tsk-image.dd"), (XfsWalker(), APFS), (ApfsWalker(), "tsk-image.dd"),
     (ApfsWalker(), "dfvfs-hfsplus.raw")],
)  # fmt: skip
def test_not_this_file_system(corpus: Path, walker: Any, image: str) -> None:
    media = open_media(registry().get("containers", "raw"), [corpus / image])
    try:
        with pytest.raises(NotRecognised):
            walker.open(media, 0, media.size)
    finally:
        media.close()


def test_xfs_scan(corpus: Path, tmp_path: Path) -> None:
    """util-linux's XFS image holds an empty root directory (label ``test-xfs``)."""
    image = unpack(corpus / "utillinux-xfs.img.xz", tmp_path)
    case = tmp_path / "case.sqlite"
    rows = _scan(case, image)
    head = image.read_bytes()[:512]
    assert head[:4] == b"XFSB"
    block_size, blocks = struct.unpack(">IQ", head[4:16])
    (root_inode,) = struct.unpack(">Q", head[56:64])
    fs_rows = query(
        case, "SELECT walker, fs_type, status, error, label, block_size, block_count, entries"
        " FROM filesystems",
    )  # fmt: skip
    assert fs_rows == [("xfs", "xfs", "ok", None, "test-xfs", block_size, blocks, 0)]
    assert rows == []  # the root itself is not a row (as fls does not list it)
    media = open_media(registry().get("containers", "raw"), [image])
    fs = XfsWalker().open(media, 0, media.size)
    try:
        root = fs._volume.get_root_directory()  # type: ignore[attr-defined]
        assert root.get_inode_number() == root_inode == 19328
        assert root.get_number_of_sub_file_entries() == 0
        assert (root.get_modification_time_as_integer() // 10**9) == 1126378127  # 2005-09-10
    finally:
        fs.close()
        media.close()


def test_walkers_registered_after_tsk() -> None:
    names = [w.name for w in registry().filesystems]
    assert names.index("tsk") < names.index("apfs") and names.index("tsk") < names.index("xfs")


@pytest.mark.parametrize("given", [None, "wrong password", PASSWORD])
def test_apfs_volume_unlocked_with_a_password(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str | None
) -> None:
    """--unlock reaches an encrypted APFS volume (FileVault on APFS): no key or a wrong one
    leaves it locked, the right password lists and hashes every file; the custody log says
    which kind of secret was used and the password is nowhere in the case file."""
    monkeypatch.setattr(apfs_plugin, "pyfsapfs",
                        SimpleNamespace(container=_encrypted_container(),
                                        get_version=pyfsapfs.get_version))  # fmt: skip
    case = tmp_path / "case.sqlite"
    unlocks = () if given is None else (parse_unlock(f"*=password:{given}"),)
    summary = scan(case, [corpus / APFS], examiner="pytest", argv=["pytest"],
                   options=ScanOptions(workers=0, verify_media=False, confirm_media=False,
                                       unlocks=unlocks))  # fmt: skip
    assert summary.status == "complete"
    rows = _by_path(file_rows(case))
    entries = [a for (a,) in query(case, "SELECT details FROM custody_log WHERE action IN"
                                         " ('volume_locked', 'volume_unlocked')")]  # fmt: skip
    if given == PASSWORD:
        assert rows["/apfs_test/passwords.txt"]["md5"].startswith("39cb0970")
        (entry,) = [json.loads(e) for e in entries]
        assert entry["secret_kind"] == "password"
        assert entry["identifiers"]["uuid"] == "0a1b2c3d-0000-4000-8000-00000000abcd"
    else:
        (errors,) = query(case, "SELECT status, error FROM filesystems")
        assert errors[0] == "error" and "encrypted and locked" in errors[1]
        assert "/apfs_test/passwords.txt" not in rows
    for path in tmp_path.glob("case.sqlite*"):
        assert PASSWORD.encode() not in path.read_bytes()
