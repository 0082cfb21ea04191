"""LUKS1 and LUKS2 encrypted volumes (``examkit_plugins.volumes.luks_format``)."""

from __future__ import annotations

from collections.abc import Sequence

from examkit.evidence import MediaStream
from examkit.hookspecs import Register, hookimpl
from examkit.layers import LayerOutput, LayerProbe, LayerStream, Locked, Secret, VolumeLayer
from examkit_plugins.volumes.luks_format import (
    MAGIC,
    Header,
    LuksError,
    SectorCipher,
    key_size_of,
    master_key,
    parse_header,
)

READ_SECTORS = 2048  # decrypted per call: 1 MiB of 512-byte sectors


class LuksLayer(VolumeLayer):
    name = "luks"
    version = "LUKS1/LUKS2 reader (cryptography AES, hashlib PBKDF2, argon2-cffi)"
    description = "LUKS1 and LUKS2 volumes (dm-crypt): AES-XTS and AES-CBC"
    priority = 20
    encrypted = True

    def probe(self, media: MediaStream, offset: int, length: int) -> LayerProbe | None:
        if media.read(offset, 6) != MAGIC:
            return None
        try:
            header = parse_header(lambda at, size: media.read(offset + at, size))
        except LuksError as exc:
            return LayerProbe("encrypted", "LUKS", {}, f"LUKS header cannot be read: {exc}")
        ids = {"uuid": header.uuid}
        if header.label:
            ids["label"] = header.label
        slots = ", ".join(str(s.number) for s in header.slots) or "none"
        return LayerProbe(
            "encrypted",
            f"LUKS{header.version}",
            ids,
            f"LUKS{header.version} {header.cipher}, {8 * key_size_of(header)}-bit key,"
            f" key slots {slots}",
        )

    def open(
        self, media: MediaStream, offset: int, length: int, secrets: Sequence[Secret] = ()
    ) -> list[LayerOutput]:
        def read(at: int, size: int) -> bytes:
            return media.read(offset + at, size)

        try:
            header = parse_header(read)
        except LuksError as exc:
            raise OSError(str(exc)) from exc
        if not secrets:
            raise Locked(f"LUKS{header.version} volume {header.uuid}: no key given")
        for secret in secrets:
            if secret.kind == "recovery-key":
                continue  # LUKS has passphrases and key files only
            try:
                key = master_key(header, read, secret.value)
            except LuksError as exc:
                raise OSError(str(exc)) from exc
            if key is not None:
                out = self._output(media, offset, length, header, key)
                out.unlocked_with = secret.kind
                return [out]
        raise Locked(f"LUKS{header.version} volume {header.uuid}: no key slot opens with the"
                     f" {len(secrets)} secret(s) given")  # fmt: skip

    @staticmethod
    def _output(
        media: MediaStream, offset: int, length: int, header: Header, key: bytes
    ) -> LayerOutput:
        try:
            cipher = SectorCipher(header.cipher, key, header.sector_size)
        except LuksError as exc:
            raise OSError(str(exc)) from exc
        start = offset + header.data_offset
        size = header.data_size if header.data_size is not None else length - header.data_offset
        size = max(0, min(size, media.size - start))
        sector = header.sector_size

        def read(at: int, want: int) -> bytes:
            first = at // sector
            last = -(-(at + want) // sector)
            out = bytearray()
            for block in range(first, last, READ_SECTORS):
                count = min(READ_SECTORS, last - block)
                raw = media.read(start + block * sector, count * sector)
                whole = len(raw) // sector * sector
                # the IV counts sectors of the segment's size (LUKS2 uses dm-crypt's
                # iv_large_sectors), from the segment start plus its iv_tweak
                out += cipher.decrypt(raw[:whole], header.iv_tweak + block)
                if whole < count * sector:
                    break
            skip = at - first * sector
            return bytes(out[skip : skip + want])

        return LayerOutput(
            "decrypted",
            "decrypted",
            LayerStream(media, size, read),
            f"LUKS{header.version} {header.uuid} decrypted",
        )


@hookimpl
def register_volume_layers(register: Register) -> None:
    register(LuksLayer())
