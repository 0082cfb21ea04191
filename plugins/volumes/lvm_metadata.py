"""LVM2 on-disk format: physical-volume label, metadata area, text metadata, extent map.

Written to LVM2's format (lib/format_text: ``label.c``, ``format-text.c``,
``layout.h``, ``import_vsn1.c``): the ``LABELONE`` label in one of the first
four sectors points at the PV header (UUID, data and metadata areas); the
metadata area header's first raw location holds the current text metadata (a
circular buffer), whose ``logical_volumes`` give each LV's segments as
(start extent, extent count, stripes of (PV, first physical extent)).

libvslvm (20260901) cannot open a logical volume made of more than one
segment ("invalid physical volume value already set"), which every extended
LV is, so examkit reads the metadata itself.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SECTOR = 512
LABEL = b"LABELONE"
FMT_MAGIC = b" LVM2 x[5A%r0N*>"


class LvmError(Exception):
    """Metadata that cannot be read or a layout this reader does not map."""


@dataclass(frozen=True)
class Stripe:
    pv: str
    first_extent: int


@dataclass(frozen=True)
class Segment:
    start_extent: int
    extent_count: int
    kind: str  # striped (linear is one stripe)
    stripes: tuple[Stripe, ...]
    stripe_size: int  # bytes; 0 for linear


@dataclass(frozen=True)
class LogicalVolume:
    name: str
    uuid: str
    segments: tuple[Segment, ...]
    extent_size: int  # bytes

    @property
    def size(self) -> int:
        return sum(s.extent_count for s in self.segments) * self.extent_size


@dataclass(frozen=True)
class VolumeGroup:
    name: str
    uuid: str
    extent_size: int  # bytes
    pv_name: str  # this physical volume's name in the metadata (pv0 ...)
    pv_count: int
    pe_start: int  # bytes: where this PV's extents begin
    lvs: tuple[LogicalVolume, ...]


def find_label(head: bytes) -> int | None:
    """The sector of the ``LABELONE`` label among the first four, or ``None``."""
    for sector in range(4):
        at = sector * SECTOR
        if head[at : at + 8] == LABEL and head[at + 24 : at + 32] == b"LVM2 001":
            return sector
    return None


def read_group(read: Callable[[int, int], bytes]) -> VolumeGroup:
    head = read(0, 4 * SECTOR)
    sector = find_label(head)
    if sector is None:
        raise LvmError("no LVM2 label")
    label = head[sector * SECTOR : (sector + 1) * SECTOR]
    pv_at = struct.unpack_from("<I", label, 20)[0]
    pv = label[pv_at:]
    pv_uuid = pv[:32].decode("ascii", "replace")
    at = 40  # after the uuid (32) and the device size (8): data areas, then metadata areas
    areas: list[list[tuple[int, int]]] = [[], []]
    for which in (0, 1):
        while at + 16 <= len(pv):
            offset, size = struct.unpack_from("<QQ", pv, at)
            at += 16
            if offset == 0 and size == 0:
                break
            areas[which].append((offset, size))
    data_areas, metadata_areas = areas
    if not metadata_areas:
        raise LvmError("physical volume has no metadata area")
    text = _metadata_text(read, metadata_areas[0][0])
    meta = parse_text(text)
    return _group(meta, pv_uuid, data_areas)


def _metadata_text(read: Callable[[int, int], bytes], mda: int) -> str:
    header = read(mda, SECTOR)
    if header[4:20] != FMT_MAGIC:
        raise LvmError("metadata area header has no LVM2 magic")
    _start, size = struct.unpack_from("<QQ", header, 24)
    offset, length = struct.unpack_from("<QQ", header, 40)
    if length == 0 or length > size:
        raise LvmError("metadata area holds no metadata")
    first = min(length, size - offset)  # the circular buffer may wrap past its end
    raw = read(mda + offset, first)
    if first < length:
        raw += read(mda + SECTOR, length - first)  # wraps to just after the header
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([\[\]{}=,])|([^\s\[\]{}=,"#]+))')


def parse_text(text: str) -> dict[str, Any]:
    """LVM2's text metadata (``name { key = value ... }``) as nested dicts."""
    tokens = [m.group(2) or m.group(3) or m.group(4) for m in _TOKEN.finditer(text)
              if not m.group(1) and (m.group(2) or m.group(3) or m.group(4))]  # fmt: skip
    pos = 0

    def value() -> Any:
        nonlocal pos
        token = tokens[pos]
        pos += 1
        if token == "[":
            items = []
            while tokens[pos] != "]":
                if tokens[pos] == ",":
                    pos += 1
                    continue
                items.append(value())
            pos += 1
            return items
        if token.startswith('"'):
            return token[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        try:
            return int(token)
        except ValueError:
            return token

    def section(end: str | None) -> dict[str, Any]:
        nonlocal pos
        out: dict[str, Any] = {}
        while pos < len(tokens) and tokens[pos] != end:
            key = tokens[pos]
            pos += 1
            if pos < len(tokens) and tokens[pos] == "{":
                pos += 1
                out[key] = section("}")
                pos += 1
            elif pos < len(tokens) and tokens[pos] == "=":
                pos += 1
                out[key] = value()
        return out

    try:
        return section(None)
    except IndexError as exc:
        raise LvmError("metadata text ends early") from exc


def _group(meta: dict[str, Any], pv_uuid: str, data_areas: list[tuple[int, int]]) -> VolumeGroup:
    groups = [(k, v) for k, v in meta.items() if isinstance(v, dict) and "extent_size" in v]
    if not groups:
        raise LvmError("metadata names no volume group")
    name, vg = groups[0]
    extent = int(vg["extent_size"]) * SECTOR
    pvs = vg.get("physical_volumes", {})
    plain = pv_uuid.replace("-", "")
    pv_name = next((k for k, v in pvs.items() if str(v.get("id", "")).replace("-", "") == plain),
                   None)  # fmt: skip
    if pv_name is None:
        raise LvmError("this physical volume is not in its volume group's metadata")
    pe_start = int(pvs[pv_name].get("pe_start", 0)) * SECTOR
    if not pe_start and data_areas:
        pe_start = data_areas[0][0]
    lvs = []
    for lv_name, lv in vg.get("logical_volumes", {}).items():
        if not isinstance(lv, dict):
            continue
        segments = []
        for key, seg in sorted(lv.items()):
            if not (key.startswith("segment") and isinstance(seg, dict)):
                continue
            raw = seg.get("stripes", [])
            stripes = tuple(Stripe(str(raw[i]), int(raw[i + 1])) for i in range(0, len(raw) - 1, 2))
            segments.append(Segment(int(seg["start_extent"]), int(seg["extent_count"]),
                                    str(seg.get("type", "")), stripes,
                                    int(seg.get("stripe_size", 0)) * SECTOR))  # fmt: skip
        segments.sort(key=lambda s: s.start_extent)
        lvs.append(LogicalVolume(lv_name, str(lv.get("id", "")), tuple(segments), extent))
    return VolumeGroup(name, str(vg.get("id", "")), extent, pv_name, len(pvs), pe_start,
                       tuple(lvs))  # fmt: skip


def unmapped(group: VolumeGroup, lv: LogicalVolume) -> str | None:
    """Why ``lv`` cannot be read from this one physical volume, or ``None``."""
    for seg in lv.segments:
        if seg.kind != "striped":
            return f"segment type {seg.kind!r} (only linear and striped are read)"
        if any(s.pv != group.pv_name for s in seg.stripes):
            return "its extents are on another physical volume of the group"
        if not seg.stripes:
            return "a segment with no stripes"
    return None


def lv_reader(
    read: Callable[[int, int], bytes], group: VolumeGroup, lv: LogicalVolume
) -> Callable[[int, int], bytes]:
    """``read(offset, length)`` of the logical volume, through its extent map."""
    extent = group.extent_size

    def where(offset: int) -> tuple[int, int]:
        """PV byte offset of LV byte ``offset``, and how many bytes follow contiguously."""
        index = offset // extent
        for seg in lv.segments:
            if seg.start_extent <= index < seg.start_extent + seg.extent_count:
                seg_off = offset - seg.start_extent * extent
                if len(seg.stripes) == 1:
                    pv_off = seg.stripes[0].first_extent * extent + seg_off
                    run = seg.extent_count * extent - seg_off
                else:
                    chunk, in_chunk = divmod(seg_off, seg.stripe_size)
                    row, col = divmod(chunk, len(seg.stripes))
                    stripe = seg.stripes[col]
                    pv_off = stripe.first_extent * extent + row * seg.stripe_size + in_chunk
                    run = seg.stripe_size - in_chunk
                return group.pe_start + pv_off, run
        raise LvmError(f"offset {offset} is in no segment")

    def read_lv(offset: int, length: int) -> bytes:
        out = bytearray()
        while length > 0:
            at, run = where(offset)
            piece = read(at, min(run, length))
            if not piece:
                break
            out += piece
            offset += len(piece)
            length -= len(piece)
        return bytes(out)

    return read_lv
