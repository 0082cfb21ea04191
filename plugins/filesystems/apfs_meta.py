"""APFS container and volume metadata libfsapfs's Python binding does not expose: snapshots.

Read straight from the on-disk structures (Apple File System Reference): the
newest valid container superblock (checkpoint descriptor area), the container
object map, each volume superblock (``APSB``) it maps, and the volume's
snapshot-metadata B-tree. Every object read is checked with its Fletcher-64
checksum; anything unexpected raises :class:`ApfsMetaError` (the walker then
records that the snapshots could not be listed, and goes on).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

NX_MAGIC = b"NXSB"
APSB_MAGIC = b"APSB"
OBJECT_TYPE_NX_SUPERBLOCK = 0x01
OBJECT_TYPE_MASK = 0x0000FFFF
BTNODE_ROOT, BTNODE_LEAF, BTNODE_FIXED_KV_SIZE = 1, 2, 4
BTREE_INFO_SIZE = 40  # at the end of a root node
APFS_TYPE_SNAP_METADATA = 1
OBJ_ID_MASK = (1 << 60) - 1
MAX_DEPTH = 16  # B-tree levels: real trees have a handful
MAX_NODES = 100_000  # nodes read per tree, against loops in corrupt metadata


class ApfsMetaError(Exception):
    """The metadata is not what the specification says (corrupt, or not APFS)."""


@dataclass(frozen=True)
class Snapshot:
    xid: int
    name: str
    created: str  # UTC, ISO 8601 with nanoseconds
    superblock_block: int  # physical block of the snapshot's volume superblock


@dataclass(frozen=True)
class VolumeMeta:
    index: int
    name: str
    uuid: str
    superblock_block: int
    xid: int
    snapshot_count: int  # apfs_num_snapshots, as the superblock says
    snapshots: list[Snapshot] = field(default_factory=list)


def fletcher64(block: bytes) -> int:
    """APFS object checksum of a block (over everything after the checksum field).

    The running sums of the specification, taken modulo 2**32 - 1 at every step,
    equal the plain sums taken modulo once at the end (a block's sums fit in 64 bits).
    """
    import numpy as np  # here, not at the top: the scan's workers load every plugin

    words = np.frombuffer(block, "<u4", (len(block) - 8) // 4, 8).astype(np.uint64)
    running = np.cumsum(words)
    mod = 0xFFFFFFFF
    sum1 = int(running[-1]) % mod if len(running) else 0
    sum2 = int(running.sum(dtype=np.uint64)) % mod if len(running) else 0
    c1 = mod - ((sum1 + sum2) % mod)
    c2 = mod - ((sum1 + c1) % mod)
    return (c2 << 32) | c1


def _time(nanoseconds: int) -> str:
    seconds, nanos = divmod(nanoseconds, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"


class ApfsMeta:
    """Reads APFS metadata through ``read(offset, size)`` on the container's region."""

    def __init__(self, read: Callable[[int, int], bytes]) -> None:
        self._read = read
        head = read(0, 4096)
        if len(head) < 4096 or head[32:36] != NX_MAGIC:
            raise ApfsMetaError("no container superblock")
        self.block_size = struct.unpack_from("<I", head, 36)[0]
        if self.block_size < 4096 or self.block_size > 65536 or self.block_size & 4095:
            raise ApfsMetaError(f"unusable block size {self.block_size}")
        self.superblock = self._newest_superblock(self.block(0))

    def block(self, number: int, check: bool = True) -> bytes:
        data = self._read(number * self.block_size, self.block_size)
        if len(data) != self.block_size:
            raise ApfsMetaError(f"block {number} is beyond the end of the container")
        if check and struct.unpack_from("<Q", data, 0)[0] != fletcher64(data):
            raise ApfsMetaError(f"block {number}: checksum mismatch")
        return data

    def _newest_superblock(self, block0: bytes) -> bytes:
        """The valid container superblock with the highest transaction id (block 0 is only
        a copy; the checkpoint descriptor area holds the newest)."""
        best = block0 if struct.unpack_from("<Q", block0, 0)[0] == fletcher64(block0) else None
        (blocks,) = struct.unpack_from("<I", block0, 104)  # nx_xp_desc_blocks
        (base,) = struct.unpack_from("<Q", block0, 112)  # nx_xp_desc_base
        if not blocks & (1 << 31) and blocks < 4096:  # a contiguous descriptor area
            for number in range(base, base + blocks):
                try:
                    data = self.block(number)
                except ApfsMetaError:
                    continue
                kind = struct.unpack_from("<I", data, 24)[0] & OBJECT_TYPE_MASK
                superblock = kind == OBJECT_TYPE_NX_SUPERBLOCK and data[32:36] == NX_MAGIC
                if superblock and (best is None or _xid(data) > _xid(best)):
                    best = data
        if best is None:
            raise ApfsMetaError("no valid container superblock")
        return best

    # -- B-trees ------------------------------------------------------------------------
    def _node(self, number: int, sizes: tuple[int, int]) -> tuple[bool, list[tuple[bytes, bytes]]]:
        """A B-tree node: ``(is_leaf, [(key, value), ...])``; ``sizes`` are the tree's
        fixed key and value sizes (from the root's btree_info)."""
        node = self.block(number)
        flags, level, nkeys = struct.unpack_from("<HHI", node, 32)
        toc_off, toc_len = struct.unpack_from("<HH", node, 40)
        toc = 56 + toc_off
        keys = toc + toc_len
        values_end = len(node) - (BTREE_INFO_SIZE if flags & BTNODE_ROOT else 0)
        leaf = bool(flags & BTNODE_LEAF)
        if leaf and level != 0:
            raise ApfsMetaError(f"B-tree node {number}: leaf at level {level}")
        entries = []
        for i in range(nkeys):
            if flags & BTNODE_FIXED_KV_SIZE:
                k_off, v_off = struct.unpack_from("<HH", node, toc + 4 * i)
                k_len, v_len = sizes[0], (sizes[1] if leaf else 8)  # non-leaf: a child oid
            else:
                k_off, k_len, v_off, v_len = struct.unpack_from("<HHHH", node, toc + 8 * i)
            key = node[keys + k_off : keys + k_off + k_len]
            value = node[values_end - v_off : values_end - v_off + v_len]
            if len(key) != k_len or len(value) != v_len:
                raise ApfsMetaError(f"B-tree node {number}: entry {i} out of bounds")
            entries.append((key, value))
        return leaf, entries

    def _sizes(self, root: int) -> tuple[int, int]:
        info = self.block(root)[-BTREE_INFO_SIZE:]  # btree_info_t ends the root node
        key_size, value_size = struct.unpack_from("<II", info, 8)
        return int(key_size), int(value_size)

    def records(self, root: int) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) of the physical B-tree rooted at block ``root``, in order."""
        sizes = self._sizes(root)
        stack = [(root, 0)]
        seen = 0
        while stack:
            number, depth = stack.pop()
            seen += 1
            if depth > MAX_DEPTH or seen > MAX_NODES:
                raise ApfsMetaError("B-tree too deep or looping")
            leaf, entries = self._node(number, sizes)
            if leaf:
                yield from entries
            else:
                children = [struct.unpack_from("<Q", value)[0] for _, value in entries]
                stack.extend((child, depth + 1) for child in reversed(children))

    def omap_lookup(self, omap_block: int, oid: int, xid: int) -> int:
        """Physical block of virtual object ``oid`` as of transaction ``xid``: the entry
        with the largest key not above ``(oid, xid)``, found by descending the tree."""
        tree = struct.unpack_from("<Q", self.block(omap_block), 48)[0]
        sizes = self._sizes(tree)
        number, target = tree, (oid, xid)
        for _depth in range(MAX_DEPTH):
            leaf, entries = self._node(number, sizes)
            below = [(struct.unpack_from("<QQ", key), value) for key, value in entries]
            below = [(k, v) for k, v in below if k <= target]
            if not below:
                break
            (k_oid, _k_xid), value = max(below, key=lambda kv: kv[0])
            if not leaf:
                number = struct.unpack_from("<Q", value)[0]
                continue
            if k_oid == oid:
                return int(struct.unpack_from("<Q", value, 8)[0])
            break
        raise ApfsMetaError(f"object {oid} is not in the object map")

    # -- volumes ------------------------------------------------------------------------
    def volumes(self) -> list[VolumeMeta]:
        """Every volume the newest container superblock lists, with its snapshots."""
        sb = self.superblock
        xid = _xid(sb)
        omap = struct.unpack_from("<Q", sb, 160)[0]
        max_fs = min(struct.unpack_from("<I", sb, 180)[0], 100)
        out = []
        for index in range(max_fs):
            oid = struct.unpack_from("<Q", sb, 184 + 8 * index)[0]
            if oid == 0:
                continue
            number = self.omap_lookup(omap, oid, xid)
            apsb = self.block(number)
            if apsb[32:36] != APSB_MAGIC:
                raise ApfsMetaError(f"volume {index}: block {number} is not a volume superblock")
            snap_tree = struct.unpack_from("<Q", apsb, 152)[0]
            name = apsb[704:960].split(b"\0", 1)[0].decode("utf-8", "replace")
            out.append(VolumeMeta(
                index=len(out), name=name, uuid=str(UUID(bytes=apsb[240:256])),
                superblock_block=number, xid=_xid(apsb),
                snapshot_count=struct.unpack_from("<Q", apsb, 216)[0],
                snapshots=list(self._snapshots(snap_tree)) if snap_tree else [],
            ))  # fmt: skip
        return out

    def _snapshots(self, tree: int) -> Iterator[Snapshot]:
        for key, value in self.records(tree):
            (obj_id_and_type,) = struct.unpack_from("<Q", key)
            if obj_id_and_type >> 60 != APFS_TYPE_SNAP_METADATA:
                continue  # name records (type 11) repeat what the metadata records say
            if len(value) < 50:
                raise ApfsMetaError("snapshot metadata record too short")
            _ext, sblock, created, _changed, _inum, _type, _flags, name_len = struct.unpack_from(
                "<QQQQQIIH", value
            )
            name = value[50 : 50 + name_len].split(b"\0", 1)[0].decode("utf-8", "replace")
            yield Snapshot(obj_id_and_type & OBJ_ID_MASK, name, _time(created), sblock)


def _xid(block: bytes) -> int:
    return int(struct.unpack_from("<Q", block, 16)[0])
