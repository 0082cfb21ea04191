"""APFS metadata examkit reads itself (pyfsapfs has no snapshot calls).

Oracles: TSK's ``fsstat -P apfs -B 107`` of the corpus image (volume superblock
block, transaction id, UUID), and, for snapshots (no tool here can make an APFS
image that has any), a container assembled in the test from the layouts in
Apple's *Apple File System Reference*, read back by the parser.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from examkit_plugins.filesystems.apfs_meta import ApfsMeta, ApfsMetaError, fletcher64

BS = 4096


def _seal(block: bytearray, oid: int, xid: int, kind: int) -> bytes:
    struct.pack_into("<QQII", block, 8, oid, xid, kind, 0)
    struct.pack_into("<Q", block, 0, fletcher64(bytes(block)))
    return bytes(block)


def _node(
    entries: list[tuple[bytes, bytes]], fixed: tuple[int, int] | None, oid: int,
    leaf: bool = True, root: bool = True,
) -> bytes:  # fmt: skip
    """A B-tree node (btree_node_phys_t) holding ``entries`` in order."""
    node = bytearray(BS)
    toc_len = len(entries) * (4 if fixed else 8)
    keys_at = 56 + toc_len
    values_end = BS - 40 if root else BS  # btree_info_t closes a root node
    k_off = v_off = 0
    for i, (key, value) in enumerate(entries):
        node[keys_at + k_off : keys_at + k_off + len(key)] = key
        v_off += len(value)  # a non-leaf value is a child oid (8 bytes)
        node[values_end - v_off : values_end - v_off + len(value)] = value
        if fixed:
            struct.pack_into("<HH", node, 56 + 4 * i, k_off, v_off)
        else:
            struct.pack_into("<HHHH", node, 56 + 8 * i, k_off, len(key), v_off, len(value))
        k_off += len(key)
    flags = (1 if root else 0) | (2 if leaf else 0) | (4 if fixed else 0)
    struct.pack_into("<HHI", node, 32, flags, 0 if leaf else 1, len(entries))
    struct.pack_into("<HH", node, 40, 0, toc_len)
    if root:
        struct.pack_into("<II", node, BS - 40 + 8, *(fixed or (0, 0)))  # key, value sizes
    return _seal(node, oid, 7, 0x40000002 if root else 0x40000003)


def _leaf(entries: list[tuple[bytes, bytes]], fixed: tuple[int, int] | None, oid: int) -> bytes:
    return _node(entries, fixed, oid)


def _container(snapshots: list[tuple[int, str, int]]) -> bytes:
    blocks: dict[int, bytes] = {}
    nx = bytearray(BS)
    nx[32:36] = b"NXSB"
    struct.pack_into("<IQ", nx, 36, BS, 16)
    struct.pack_into("<Q", nx, 160, 2)  # nx_omap_oid
    struct.pack_into("<I", nx, 180, 100)  # nx_max_file_systems
    struct.pack_into("<Q", nx, 184, 1026)  # nx_fs_oid[0], a virtual oid
    blocks[0] = _seal(nx, 1, 7, 0x80000001)
    omap = bytearray(BS)
    struct.pack_into("<Q", omap, 48, 3)  # om_tree_oid
    blocks[2] = _seal(omap, 2, 7, 0x4000000B)
    older = (struct.pack("<QQ", 1026, 5), struct.pack("<IIQ", 0, BS, 9))  # superseded
    newer = (struct.pack("<QQ", 1026, 7), struct.pack("<IIQ", 0, BS, 4))
    later = (struct.pack("<QQ", 1026, 8), struct.pack("<IIQ", 0, BS, 10))  # after this xid
    other = (struct.pack("<QQ", 2000, 1), struct.pack("<IIQ", 0, BS, 11))
    first = (struct.pack("<QQ", 1000, 1), struct.pack("<IIQ", 0, BS, 12))
    blocks[6] = _node([first, older], (16, 16), 6, root=False)  # two leaves under a root
    blocks[7] = _node([newer, later, other], (16, 16), 7, root=False)
    blocks[3] = _node([(first[0], struct.pack("<Q", 6)), (newer[0], struct.pack("<Q", 7))],
                      (16, 16), 3, leaf=False)  # fmt: skip
    apsb = bytearray(BS)
    apsb[32:36] = b"APSB"
    struct.pack_into("<Q", apsb, 152, 5)  # apfs_snap_meta_tree_oid
    struct.pack_into("<Q", apsb, 216, len(snapshots))  # apfs_num_snapshots
    apsb[240:256] = bytes(range(16))
    apsb[704 : 704 + 4] = b"Data"
    blocks[4] = _seal(apsb, 1026, 7, 0x0D)
    records = []
    for xid, name, created in snapshots:
        raw = name.encode() + b"\0"
        value = struct.pack("<QQQQQIIH", 0, 100 + xid, created, created, 0, 0, 0, len(raw)) + raw
        records.append((struct.pack("<Q", (1 << 60) | xid), value))
        name_key = struct.pack("<QH", (11 << 60) | ((1 << 60) - 1), len(raw)) + raw  # obj_id ~0
        records.append((name_key, struct.pack("<Q", xid)))
    ids = [struct.unpack_from("<Q", key)[0] for key, _ in records]  # by obj_id, then type
    records = [r for _, r in sorted(zip([(i & ((1 << 60) - 1), i >> 60) for i in ids], records,
                                        strict=True))]  # fmt: skip
    blocks[5] = _leaf(records, None, 5)
    image = bytearray(16 * BS)  # blocks 9-12: what the other map entries point at
    for number, data in blocks.items():
        image[number * BS : (number + 1) * BS] = data
    return bytes(image)


def _reader(data: bytes):  # type: ignore[no-untyped-def]
    return lambda at, size: data[at : at + size]


def test_snapshots_read_from_an_assembled_container() -> None:
    snaps = [(12, "com.apple.TimeMachine.2026-01-02-030405.local", 1_767_323_045_123_456_789),
             (40, "before-seizure", 1_780_000_000_000_000_001)]  # fmt: skip
    (volume,) = ApfsMeta(_reader(_container(snaps))).volumes()
    assert (volume.name, volume.superblock_block, volume.snapshot_count) == ("Data", 4, 2)
    assert volume.uuid == "00010203-0405-0607-0809-0a0b0c0d0e0f"
    got = [(s.xid, s.name, s.created, s.superblock_block) for s in volume.snapshots]
    assert got == [
        (12, snaps[0][1], "2026-01-02T03:04:05.123456789Z", 112),
        (40, "before-seizure", "2026-05-28T20:26:40.000000001Z", 140),
    ]


def test_a_damaged_block_is_refused() -> None:
    image = bytearray(_container([(12, "s", 0)]))
    image[5 * BS + 100] ^= 0xFF  # inside the snapshot tree
    with pytest.raises(ApfsMetaError, match="block 5: checksum mismatch"):
        ApfsMeta(_reader(bytes(image))).volumes()
    with pytest.raises(ApfsMetaError, match="no container superblock"):
        ApfsMeta(_reader(bytes(BS)))


@pytest.mark.corpus
def test_corpus_volume_superblock_agrees_with_tsk(corpus: Path) -> None:
    """Where the parser finds the volume superblock, and what it says, is what TSK's
    pool-aware fsstat printed; the image has no snapshots."""
    fsstat = (corpus / "oracle" / "dfvfs-apfs.raw.pool-apfs-B107.fsstat.txt").read_text()
    data = (corpus / "dfvfs-apfs.raw").read_bytes()
    (volume,) = ApfsMeta(_reader(data)).volumes()
    assert volume.superblock_block == int(re.search(r"APSB Block Number: (\d+)", fsstat)[1])
    assert volume.xid == int(re.search(r"APSB xid: (\d+)", fsstat)[1])
    assert volume.uuid == re.search(r"Volume UUID (\S+)", fsstat)[1]
    assert volume.name == re.search(r"Name \(Role\): (\S+)", fsstat)[1]
    assert (volume.snapshot_count, volume.snapshots) == (0, [])
