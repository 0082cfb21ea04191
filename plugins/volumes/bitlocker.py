"""BitLocker (and BitLocker To Go) volumes through libbde (pybde).

Secrets: ``password:`` (the user password), ``recovery-key:`` (the 48-digit
recovery password, with or without dashes) and ``key-file:`` (a ``.BEK``
startup key file). Without one, the volume is recorded as encrypted with its
volume GUID and its key protectors (type and GUID: the GUID names the recovery
key an examiner must ask for).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

import pybde

from examkit.evidence import MediaStream
from examkit.hookspecs import Register, hookimpl
from examkit.layers import LayerOutput, LayerProbe, Locked, RegionFile, Secret, VolumeLayer
from examkit_plugins._libyal import libyal_cause, libyal_stream

SIGNATURES = (b"-FVE-FS-", b"MSWIN4.1")  # Vista+ / To Go (checked at offset 3)
_PROTECTORS = {  # FVE key protection types
    0x0000: "clear key", 0x0100: "TPM", 0x0200: "startup key", 0x0500: "TPM and PIN",
    0x0800: "recovery password", 0x2000: "password",
}  # fmt: skip


def _guid(value: Any) -> str:
    return str(value).strip("{}").lower() if value else ""


class BitLockerLayer(VolumeLayer):
    name = "bitlocker"
    version = f"libbde {pybde.get_version()}"
    description = "BitLocker and BitLocker To Go volumes"
    priority = 20
    encrypted = True

    def probe(self, media: MediaStream, offset: int, length: int) -> LayerProbe | None:
        head = media.read(offset, 512)
        if head[3:11] not in SIGNATURES:
            return None
        region = RegionFile(media, offset, length)
        try:
            if not pybde.check_volume_signature_file_object(region):
                return None
        except OSError:
            return None
        volume = pybde.volume()
        try:
            volume.open_file_object(region)
        except OSError as exc:
            return LayerProbe("encrypted", "BitLocker", {}, f"BitLocker: {libyal_cause(exc)}")
        try:
            ids = {"guid": _guid(volume.get_volume_identifier())}
            kinds = []
            for i in range(volume.number_of_key_protectors):
                protector = volume.get_key_protector(i)
                kind = _PROTECTORS.get(int(protector.type), f"type 0x{int(protector.type):04x}")
                ids[f"protector-{i}"] = _guid(protector.identifier)
                kinds.append(f"{kind} {{{_guid(protector.identifier)}}}")
            method = volume.get_encryption_method()
            return LayerProbe("encrypted", "BitLocker", ids,
                              f"BitLocker (method 0x{int(method or 0):04x}); key protectors: "
                              + ("; ".join(kinds) or "none"))  # fmt: skip
        finally:
            volume.close()

    def open(
        self, media: MediaStream, offset: int, length: int, secrets: Sequence[Secret] = ()
    ) -> list[LayerOutput]:
        if not secrets:
            raise Locked("BitLocker volume: no key given")
        for secret in secrets:
            volume = pybde.volume()
            try:
                _give(volume, secret)
                volume.open_file_object(RegionFile(media, offset, length))
                if volume.is_locked() and not volume.unlock():
                    volume.close()
                    continue
            except OSError:
                volume.close()
                continue
            size = int(volume.get_size())
            stream = libyal_stream(media, volume, size, "BitLocker volume")
            return [
                LayerOutput("decrypted", "decrypted", stream, "BitLocker decrypted", secret.kind)
            ]
        raise Locked(f"BitLocker volume: none of the {len(secrets)} secret(s) given opens it")


def _give(volume: Any, secret: Secret) -> None:
    if secret.kind == "password":
        volume.set_password(secret.text)
    elif secret.kind == "recovery-key":
        volume.set_recovery_password(secret.text.strip())
    else:  # a .BEK startup key: libbde reads it from a path
        with tempfile.NamedTemporaryFile(prefix="examkit-bek-", suffix=".BEK") as tmp:
            os.fchmod(tmp.fileno(), 0o600)
            tmp.write(secret.value)
            tmp.flush()
            volume.read_startup_key(tmp.name)


@hookimpl
def register_volume_layers(register: Register) -> None:
    register(BitLockerLayer())
