"""Virtual disks (VMDK, VHD, VHDX, QCOW2) of the NTFS fixture: the same media and rows as raw.

The disks were written by qemu-img (tests/fixtures/build_virtual_disks.py) and are unpacked
from ``images/virtual/virtual.tar.xz``; the oracle for the media is the raw image's bytes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from examkit.errors import EvidenceError
from examkit.evidence import group_images, hash_media, open_media
from examkit.plugins import registry
from examkit.scan import ScanOptions, scan
from tests.conftest import FIXTURES, comparable_rows, query, sparse_copy, unpack

BUNDLE = FIXTURES / "virtual" / "virtual.tar.xz"
DISKS = {  # the file given to examkit -> the container that must read it
    "ntfs.vmdk": "vmdk",
    "ntfs-split.vmdk": "vmdk",
    "ntfs.vhd": "vhdi",
    "ntfs-fixed.vhd": "vhdi",
    "ntfs.vhdx": "vhdi",
    "ntfs.qcow2": "qcow",
}
OPTIONS = ScanOptions(workers=2, confirm_media=False)

pytestmark = pytest.mark.skipif(not BUNDLE.exists(), reason="virtual disk fixtures not built")


@dataclass(frozen=True)
class Reference:
    """The raw image and what a scan of it records."""

    image: Path
    md5: str
    sha256: str
    rows: list[tuple[Any, ...]]


@pytest.fixture(scope="module")
def virtual(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The virtual disks, unpacked (read only: tests copy what they damage)."""
    folder = tmp_path_factory.mktemp("virtual")
    with tarfile.open(BUNDLE, "r:xz") as tar:
        for member in tar.getmembers():
            assert member.isfile() and "/" not in member.name, member.name
            sparse_copy(tar.extractfile(member), folder / member.name)
    return folder


@pytest.fixture(scope="module")
def _reference_cache(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return {"folder": tmp_path_factory.mktemp("raw")}


@pytest.fixture
def reference(_reference_cache: dict[str, Any]) -> Reference:
    """The raw scan, made once (inside a test, so with the test's own empty hash-set library)."""
    if "ref" not in _reference_cache:
        folder: Path = _reference_cache["folder"]
        image = unpack(FIXTURES / "ntfs.raw.gz", folder)
        data = image.read_bytes()
        case = folder / "raw.sqlite"
        assert scan(case, [image], options=OPTIONS).status == "complete"
        rows = comparable_rows(case)
        assert len(rows) > 20
        _reference_cache["ref"] = Reference(
            image, hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest(), rows
        )
    ref: Reference = _reference_cache["ref"]
    return ref


def evidence_row(case: Path) -> dict[str, Any]:
    ((container, paths, md5, sha256, size, acq, meta),) = query(
        case,
        "SELECT container, source_paths, media_md5, media_sha256, media_size,"
        " acquisition_md5, container_metadata FROM evidence",
    )
    return {
        "container": container,
        "paths": [Path(p).name for p in json.loads(paths)],
        "md5": md5,
        "sha256": sha256,
        "size": size,
        "acquisition_md5": acq,
        "metadata": json.loads(meta),
    }


@pytest.mark.parametrize("name", sorted(DISKS))
def test_virtual_disk_gives_the_raw_rows_and_media(
    virtual: Path, reference: Reference, tmp_path: Path, name: str
) -> None:
    case = tmp_path / "case.sqlite"
    summary = scan(case, [virtual / name], options=OPTIONS)
    assert summary.status == "complete", summary.failures
    assert comparable_rows(case) == reference.rows
    row = evidence_row(case)
    assert row["container"] == DISKS[name]
    assert (row["md5"], row["sha256"]) == (reference.md5, reference.sha256)
    assert row["size"] == reference.image.stat().st_size  # a fixed VHD's footer is not media
    assert row["acquisition_md5"] is None  # these formats carry no acquisition hash
    assert row["metadata"]["format"] == {"vmdk": "VMDK", "qcow": "QCOW"}.get(
        DISKS[name], "VHDX" if name.endswith(".vhdx") else "VHD"
    )
    if name == "ntfs-split.vmdk":  # the evidence records the descriptor and its extent
        assert row["paths"] == ["ntfs-split.vmdk", "ntfs-split-s001.vmdk"]
        assert row["metadata"]["disk_type"] == "sparse_2gb_extent"
    else:
        assert row["paths"] == [name]


def test_split_vmdk_given_by_its_extent_is_the_whole_set(virtual: Path, tmp_path: Path) -> None:
    containers = registry().containers
    ((container, paths),) = group_images([virtual / "ntfs-split-s001.vmdk"], containers)
    assert container.name == "vmdk"
    assert [p.name for p in paths] == ["ntfs-split.vmdk", "ntfs-split-s001.vmdk"]
    both = [virtual / "ntfs-split.vmdk", virtual / "ntfs-split-s001.vmdk"]
    assert len(group_images(both, containers)) == 1
    lone = tmp_path / "ntfs-split-s001.vmdk"  # without its descriptor
    shutil.copy(virtual / "ntfs-split-s001.vmdk", lone)
    ((container, paths),) = group_images([lone], containers)
    with pytest.raises(EvidenceError, match="one extent of a split VMDK"):
        open_media(container, paths)
    descriptor = tmp_path / "d" / "ntfs-split.vmdk"  # and a descriptor without its extent
    descriptor.parent.mkdir()
    shutil.copy(virtual / "ntfs-split.vmdk", descriptor)
    ((container, paths),) = group_images([descriptor], containers)
    with pytest.raises(EvidenceError, match=r"extent file ntfs-split-s001\.vmdk, which is missing"):
        open_media(container, paths)


def test_renamed_vmdk_reads_its_own_data(
    virtual: Path, reference: Reference, tmp_path: Path
) -> None:
    """libvmdk would open the extent named inside the file ('ntfs.vmdk'): here a decoy."""
    shutil.copy(virtual / "ntfs.vmdk", tmp_path / "exhibit-7.vmdk")
    shutil.copy(virtual / "delta.vmdk", tmp_path / "ntfs.vmdk")  # same name, other content
    ((container, paths),) = group_images([tmp_path / "exhibit-7.vmdk"], registry().containers)
    with open_media(container, paths) as media:
        digests = hash_media(media, registry().hashers)
    assert digests["sha256"] == reference.sha256


FLAT_DESCRIPTOR = """# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="monolithicFlat"

# Extent description
RW 16384 FLAT "C:\\VMs\\disk-flat.vmdk" 0

# The Disk Data Base
#DDB
"""


def test_flat_vmdk_descriptor_over_a_raw_extent(reference: Reference, tmp_path: Path) -> None:
    """A descriptor naming its extent by another machine's path: found next to it."""
    (tmp_path / "disk.vmdk").write_text(FLAT_DESCRIPTOR)
    shutil.copy(reference.image, tmp_path / "disk-flat.vmdk")
    ((container, paths),) = group_images([tmp_path / "disk.vmdk"], registry().containers)
    assert container.name == "vmdk"
    assert [p.name for p in paths] == ["disk.vmdk", "disk-flat.vmdk"]
    with open_media(container, paths) as media:
        assert media.info.metadata["disk_type"] == "monolithic_flat"
        assert hash_media(media, registry().hashers)["sha256"] == reference.sha256


def _damaged(virtual: Path, name: str, folder: Path) -> Path:
    """A damaged copy of a disk: cut in half (a fixed VHD keeps its footer)."""
    if name == "ntfs-split.vmdk":  # the descriptor is whole, its extent is cut
        shutil.copy(virtual / name, folder / name)
        data = (virtual / "ntfs-split-s001.vmdk").read_bytes()
        (folder / "ntfs-split-s001.vmdk").write_bytes(data[: len(data) // 2])
        return folder / name
    data = (virtual / name).read_bytes()
    cut = data[: len(data) // 2]
    (folder / name).write_bytes(cut + data[-512:] if name == "ntfs-fixed.vhd" else cut)
    return folder / name


@pytest.mark.parametrize("name", sorted(DISKS))
def test_damaged_virtual_disk_fails_with_one_line(virtual: Path, tmp_path: Path, name: str) -> None:
    damaged = _damaged(virtual, name, tmp_path)
    summary = scan(tmp_path / "case.sqlite", [damaged], options=OPTIONS)
    assert summary.status == "failed"
    assert len(summary.failures) == 1
    failure = summary.failures[0]
    assert "\n" not in failure and "Traceback" not in failure
    assert any(word in failure for word in ("truncated", "cannot read", "cannot open")), failure
    assert query(tmp_path / "case.sqlite", "SELECT scan_status FROM evidence") in (
        [],
        [("failed",)],
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("delta.vmdk", "VMDK delta (snapshot) disk whose parent 'base.vmdk' is missing"),
        ("differencing.vhd", "differencing VHD whose parent 'base.vhd' is missing"),
        ("overlay.qcow2", "QCOW overlay whose backing file 'base.raw' is missing"),
        ("encrypted.qcow2", "encrypted QCOW (AES)"),
    ],
)
def test_disks_that_need_a_parent_or_a_key_are_refused(
    virtual: Path, tmp_path: Path, name: str, message: str
) -> None:
    summary = scan(tmp_path / "case.sqlite", [virtual / name], options=OPTIONS)
    assert summary.status == "failed"
    (failure,) = summary.failures
    assert message in failure and "\n" not in failure


def test_parent_present_is_still_refused_and_luks_is_named(virtual: Path, tmp_path: Path) -> None:
    containers = registry().containers
    shutil.copy(virtual / "overlay.qcow2", tmp_path / "overlay.qcow2")
    (tmp_path / "base.raw").write_bytes(bytes(8 << 20))
    ((container, paths),) = group_images([tmp_path / "overlay.qcow2"], containers)
    with pytest.raises(EvidenceError, match="disk chains are not read") as info:
        open_media(container, paths)
    assert "qemu-img convert" in info.value.hint
    luks = bytearray((virtual / "ntfs.qcow2").read_bytes()[: 1 << 20])
    luks[32:36] = struct.pack(">I", 2)  # crypt_method: LUKS
    (tmp_path / "luks.qcow2").write_bytes(luks)
    ((container, paths),) = group_images([tmp_path / "luks.qcow2"], containers)
    with pytest.raises(EvidenceError, match=r"encrypted QCOW \(LUKS\)"):
        open_media(container, paths)


def test_detection_order(virtual: Path, reference: Reference) -> None:
    """A fixed VHD (raw data + footer) is a VHD, not raw; raw, E01 and split stay theirs."""
    containers = registry().containers
    names = [c.name for c in containers]
    assert names.index("vhdi") < names.index("split-raw") < names.index("raw")
    for path, expected in [
        (virtual / "ntfs-fixed.vhd", "vhdi"),
        (reference.image, "raw"),
        (FIXTURES / "ntfs.E01", "ewf"),
    ]:
        ((container, _),) = group_images([path], containers)
        assert container.name == expected, path
    for container in containers:
        if container.name in ("vmdk", "vhdi", "qcow"):
            assert f"(lib{container.name}" in container.version and container.description
