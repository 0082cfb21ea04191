"""LVM2 logical volumes (``examkit_plugins.volumes.lvm_metadata``).

The region must hold an LVM2 physical volume. Logical volumes whose extents
all lie on it (linear or striped) are opened; one with extents on another
physical volume of the group (a group spanning disks) or of another segment
type (thin, RAID, cache) is recorded with the reason, and not walked.
"""

from __future__ import annotations

from collections.abc import Sequence

from examkit.evidence import MediaStream
from examkit.hookspecs import Register, hookimpl
from examkit.layers import LayerOutput, LayerProbe, LayerStream, Secret, VolumeLayer
from examkit_plugins.volumes.lvm_metadata import (
    LvmError,
    VolumeGroup,
    find_label,
    lv_reader,
    read_group,
    unmapped,
)


class LvmLayer(VolumeLayer):
    name = "lvm"
    version = "LVM2 text-metadata reader"
    description = "LVM2 physical volumes: linear and striped logical volumes"
    priority = 30

    def probe(self, media: MediaStream, offset: int, length: int) -> LayerProbe | None:
        if find_label(media.read(offset, 2048)) is None:
            return None
        try:
            group = read_group(lambda at, n: media.read(offset + at, n))
        except LvmError as exc:
            return LayerProbe("container", "LVM2", {}, f"LVM2 physical volume: {exc}")
        return LayerProbe("container", "LVM2", {"vg": group.name, "vg_uuid": group.uuid},
                          _describe(group))  # fmt: skip

    def open(
        self, media: MediaStream, offset: int, length: int, secrets: Sequence[Secret] = ()
    ) -> list[LayerOutput]:
        def read(at: int, n: int) -> bytes:
            return media.read(offset + at, n)

        try:
            group = read_group(read)
        except LvmError as exc:
            raise OSError(str(exc)) from exc
        outputs = []
        for lv in group.lvs:
            if unmapped(group, lv) is not None:
                continue  # described in the probe's detail; nothing to walk here
            stream = LayerStream(media, lv.size, lv_reader(read, group, lv))
            outputs.append(LayerOutput(
                lv.name, "logical", stream,
                f"LVM2 {group.name}/{lv.name}, {len(lv.segments)} segment(s)",
            ))  # fmt: skip
        return outputs


def _describe(group: VolumeGroup) -> str:
    parts = []
    for lv in group.lvs:
        why = unmapped(group, lv)
        parts.append(f"{lv.name} ({lv.size:,} bytes{'; not read: ' + why if why else ''})")
    pvs = f", {group.pv_count} physical volumes" if group.pv_count > 1 else ""
    return f"LVM2 volume group {group.name}{pvs}: " + (", ".join(parts) or "no logical volumes")


@hookimpl
def register_volume_layers(register: Register) -> None:
    register(LvmLayer())
