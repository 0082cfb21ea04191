"""FileVault 2 (Core Storage) volumes through libfvde (pyfvde).

Secrets: ``password:`` (a user's password) and ``recovery-key:`` (the
24-character recovery key). libfvde needs the ``EncryptedRoot.plist.wipekey``
that Core Storage keeps inside the volume; it reads it from there itself.
FileVault on APFS (encrypted APFS volumes) is a matter of the APFS walker and
is not opened here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyfvde

from examkit.evidence import MediaStream
from examkit.hookspecs import Register, hookimpl
from examkit.layers import LayerOutput, LayerProbe, Locked, RegionFile, Secret, VolumeLayer
from examkit_plugins._libyal import libyal_cause, libyal_stream

CORE_STORAGE = b"CS"  # at offset 88 of the physical volume header


class FileVaultLayer(VolumeLayer):
    name = "filevault"
    version = f"libfvde {pyfvde.get_version()}"
    description = "FileVault 2 (Core Storage) encrypted volumes"
    priority = 20
    encrypted = True

    def probe(self, media: MediaStream, offset: int, length: int) -> LayerProbe | None:
        if media.read(offset + 88, 2) != CORE_STORAGE:
            return None
        try:
            if not pyfvde.check_volume_signature_file_object(RegionFile(media, offset, length)):
                return None
        except OSError as exc:
            return LayerProbe("encrypted", "FileVault 2", {}, f"Core Storage: {libyal_cause(exc)}")
        return LayerProbe("encrypted", "FileVault 2", {}, "FileVault 2 (Core Storage) volume")

    def open(
        self, media: MediaStream, offset: int, length: int, secrets: Sequence[Secret] = ()
    ) -> list[LayerOutput]:
        if not secrets:
            raise Locked("FileVault 2 volume: no key given")
        for secret in secrets:
            if secret.kind == "key-file":
                continue
            volume: Any = pyfvde.volume()
            try:
                if secret.kind == "password":
                    volume.set_password(secret.text)
                else:
                    volume.set_recovery_password(secret.text.strip())
                volume.open_file_object(RegionFile(media, offset, length))
                if volume.is_locked() and not volume.unlock():
                    volume.close()
                    continue
            except OSError:
                volume.close()
                continue
            stream = libyal_stream(media, volume, int(volume.get_size()), "FileVault volume")
            return [
                LayerOutput("decrypted", "decrypted", stream, "FileVault 2 decrypted", secret.kind)
            ]
        raise Locked(f"FileVault 2 volume: none of the {len(secrets)} secret(s) given opens it")


@hookimpl
def register_volume_layers(register: Register) -> None:
    register(FileVaultLayer())
