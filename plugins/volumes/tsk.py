"""Partition tables (DOS/MBR with extended partitions, GPT, BSD, Sun, Mac) via TSK."""

from __future__ import annotations

import pytsk3

from examkit.evidence import MediaStream
from examkit.hookspecs import Register, hookimpl
from examkit.models import Volume
from examkit.walk import NotRecognised, VolumeSystem
from examkit_plugins.tsk_image import TSK_VERSION, enum_name, tsk_image

_KIND = {
    pytsk3.TSK_VS_PART_FLAG_ALLOC: "partition",
    pytsk3.TSK_VS_PART_FLAG_UNALLOC: "unallocated",
    pytsk3.TSK_VS_PART_FLAG_META: "meta",
}


class TskVolumeSystem(VolumeSystem):
    name = "tsk"
    version = f"pytsk3 (TSK {TSK_VERSION})"
    description = "DOS/MBR (extended and logical), GPT, BSD, Sun and Mac partition tables"

    def volumes(self, media: MediaStream) -> list[Volume]:
        try:
            vs = pytsk3.Volume_Info(tsk_image(media))
        except OSError as exc:
            raise NotRecognised(str(exc).strip().splitlines()[-1]) from exc
        block = int(vs.info.block_size)
        base = int(vs.info.offset)
        system = enum_name(vs.info.vstype, "TSK_VS_TYPE_")
        out: list[Volume] = []
        for part in vs:
            start = base + int(part.start) * block
            if start >= media.size:
                continue  # an entry that points past the end of a truncated image
            length = min(int(part.len) * block, media.size - start)
            kind = _KIND.get(int(part.flags), "meta")
            desc = part.desc.decode("utf-8", "backslashreplace") if part.desc else ""
            slot = int(part.slot_num) if int(part.slot_num) >= 0 else None
            out.append(Volume(len(out), kind, start, length, desc, slot, system))
        return out


@hookimpl
def register_volume_systems(register: Register) -> None:
    register(TskVolumeSystem())
