"""Volume Shadow Copies of NTFS volumes through libvshadow (pyvshadow).

Only with ``--shadow-copies``: each store becomes a ``snapshot`` volume, walked
like the live volume; the live volume is walked as well (the layer is additive).
Files whose content is the same in the live volume and a snapshot are marked
after hashing (``examkit.snapshots``), so each distinct content is counted once.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyvshadow

from examkit.evidence import MediaStream
from examkit.hookspecs import Register, hookimpl
from examkit.layers import LayerOutput, LayerProbe, RegionFile, Secret, VolumeLayer
from examkit_plugins._libyal import libyal_cause, libyal_stream

NTFS = b"NTFS    "


class ShadowCopyLayer(VolumeLayer):
    name = "vss"
    version = f"libvshadow {pyvshadow.get_version()}"
    description = "Volume Shadow Copy snapshots of NTFS volumes (--shadow-copies)"
    priority = 60
    additive = True
    opt_in = "shadow_copies"

    def probe(self, media: MediaStream, offset: int, length: int) -> LayerProbe | None:
        if media.read(offset + 3, 8) != NTFS:
            return None
        volume = pyvshadow.volume()
        try:
            volume.open_file_object(RegionFile(media, offset, length))
            stores = volume.number_of_stores
        except OSError:
            return None  # no VSS catalog: an ordinary NTFS volume
        finally:
            volume.close()
        if not stores:
            return None
        return LayerProbe("snapshots", "VSS", {}, f"{stores} shadow copies")

    def open(
        self, media: MediaStream, offset: int, length: int, secrets: Sequence[Secret] = ()
    ) -> list[LayerOutput]:
        volume = pyvshadow.volume()
        try:
            volume.open_file_object(RegionFile(media, offset, length))
        except OSError as exc:
            volume.close()
            raise OSError(f"libvshadow cannot open the volume: {libyal_cause(exc)}") from exc
        outputs = []
        for i in range(volume.number_of_stores):
            store = volume.get_store(i)
            created = store.get_creation_time()
            stream = libyal_stream(media, store, int(store.volume_size), f"shadow copy {i + 1}",
                                   owner=volume, close=False)  # fmt: skip
            outputs.append(LayerOutput(
                f"vss-{i + 1}", "snapshot", stream,
                f"shadow copy {i + 1} of {volume.number_of_stores}, {store.identifier},"
                f" created {created}",
            ))  # fmt: skip
        return outputs


@hookimpl
def register_volume_layers(register: Register) -> None:
    register(ShadowCopyLayer())
