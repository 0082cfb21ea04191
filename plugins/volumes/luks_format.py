"""LUKS1 and LUKS2 on-disk format: read the header, open a key slot, decrypt sectors.

Written to the LUKS1 specification (1.2.3) and the LUKS2 on-disk format
document (1.1.x) from cryptsetup; the primitives come from ``cryptography``
(AES), ``hashlib`` (PBKDF2) and ``argon2-cffi`` (Argon2i / Argon2id).
libluksde reads LUKS1 only and takes passwords as text, so it cannot open the
LUKS2 volumes current distributions make, nor binary key files.

Supported data ciphers: AES in XTS (``plain64``/``plain``) and CBC
(``essiv:sha256``, ``plain64``, ``plain``) modes, the ones cryptsetup has
defaulted to. Others (Serpent, Twofish, authenticated LUKS2) are refused with
a clear reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAGIC = b"LUKS\xba\xbe"
SECTOR = 512
LUKS1_ACTIVE = 0x00AC71F3


class LuksError(Exception):
    """A header that cannot be read or a volume this code cannot decrypt."""


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


@dataclass
class KeySlot:
    number: int
    key_size: int  # bytes of the master key
    area_offset: int  # bytes from the start of the LUKS volume
    area_size: int
    area_cipher: str  # e.g. aes-xts-plain64
    area_key_size: int
    kdf: dict[str, Any]
    stripes: int
    af_hash: str
    digest_ids: list[str] = field(default_factory=list)


@dataclass
class Header:
    version: int
    uuid: str
    label: str
    cipher: str  # e.g. aes-xts-plain64
    key_size: int
    data_offset: int  # bytes
    data_size: int | None  # bytes; None: to the end of the volume
    sector_size: int
    iv_tweak: int
    slots: list[KeySlot]
    digests: list[dict[str, Any]]  # {hash, iterations, salt, digest}


def _u32(raw: bytes, at: int) -> int:
    value: int = struct.unpack_from(">I", raw, at)[0]
    return value


def parse_header(read: Callable[[int, int], bytes]) -> Header:
    head = read(0, 4096)
    if len(head) < 592 or head[:6] != MAGIC:
        raise LuksError("no LUKS header")
    version = struct.unpack_from(">H", head, 6)[0]
    if version == 1:
        return _luks1(head)
    if version == 2:
        return _luks2(head, read)
    raise LuksError(f"LUKS version {version} is not supported")


def _luks1(h: bytes) -> Header:
    cipher = f"{_text(h[8:40])}-{_text(h[40:72])}"
    hash_spec = _text(h[72:104])
    key_bytes = _u32(h, 108)
    digest = {
        "hash": hash_spec,
        "digest": h[112:132],
        "salt": h[132:164],
        "iterations": _u32(h, 164),
    }
    slots = []
    for i in range(8):
        at = 208 + 48 * i
        active, iterations = _u32(h, at), _u32(h, at + 4)
        if active != LUKS1_ACTIVE:
            continue
        stripes = _u32(h, at + 44)
        slots.append(KeySlot(
            i, key_bytes, _u32(h, at + 40) * SECTOR, key_bytes * stripes, cipher, key_bytes,
            {"type": "pbkdf2", "hash": hash_spec, "iterations": iterations,
             "salt": h[at + 8 : at + 40]},
            stripes, hash_spec, ["0"],
        ))  # fmt: skip
    return Header(1, _text(h[168:208]), "", cipher, key_bytes, _u32(h, 104) * SECTOR, None,
                  SECTOR, 0, slots, [{**digest, "id": "0", "segments": ["0"]}])  # fmt: skip


def _luks2(head: bytes, read: Callable[[int, int], bytes]) -> Header:
    hdr_size = struct.unpack_from(">Q", head, 8)[0]
    if not 4096 < hdr_size <= 4 << 20:
        raise LuksError(f"LUKS2 header size {hdr_size} is out of range")
    area = read(4096, hdr_size - 4096)
    try:
        meta = json.loads(area.split(b"\0", 1)[0].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise LuksError(f"LUKS2 JSON metadata cannot be read: {exc}") from exc
    _check_luks2_checksum(head, area, hdr_size)
    segments = meta.get("segments", {})
    crypt = [(k, s) for k, s in sorted(segments.items()) if s.get("type") == "crypt"]
    if not crypt:
        raise LuksError("LUKS2 volume has no crypt segment")
    seg_id, seg = crypt[0]
    if seg.get("integrity"):
        raise LuksError("LUKS2 with authenticated encryption (dm-integrity) is not supported")
    if len(crypt) > 1 or meta.get("config", {}).get("requirements"):
        raise LuksError("LUKS2 volume is being re-encrypted (more than one segment)")
    size = None if seg.get("size", "dynamic") == "dynamic" else int(seg["size"])
    slots = []
    digests = []
    for did, d in meta.get("digests", {}).items():
        if d.get("type") != "pbkdf2":
            continue
        digests.append({
            "id": did, "hash": d["hash"], "iterations": int(d["iterations"]),
            "salt": base64.b64decode(d["salt"]), "digest": base64.b64decode(d["digest"]),
            "segments": [str(s) for s in d.get("segments", [])],
            "keyslots": [str(s) for s in d.get("keyslots", [])],
        })  # fmt: skip
    for sid, ks in sorted(meta.get("keyslots", {}).items(), key=lambda kv: int(kv[0])):
        if ks.get("type") != "luks2" or ks.get("area", {}).get("type") != "raw":
            continue
        kdf = dict(ks["kdf"])
        kdf["salt"] = base64.b64decode(kdf["salt"])
        af = ks.get("af", {})
        slots.append(KeySlot(
            int(sid), int(ks["key_size"]), int(ks["area"]["offset"]), int(ks["area"]["size"]),
            ks["area"]["encryption"], int(ks["area"]["key_size"]), kdf,
            int(af.get("stripes", 4000)), af.get("hash", "sha256"),
            [d["id"] for d in digests if sid in d["keyslots"]],
        ))  # fmt: skip
    return Header(
        2,
        _text(head[168:208]),
        _text(head[24:72]),
        seg["encryption"],
        0,
        int(seg["offset"]),
        size,
        int(seg.get("sector_size", SECTOR)),
        int(seg.get("iv_tweak", "0")),
        slots,
        [d for d in digests if seg_id in d["segments"]],
    )


def _check_luks2_checksum(head: bytes, area: bytes, hdr_size: int) -> None:
    algorithm = _text(head[72:104]) or "sha256"
    try:
        digest = hashlib.new(algorithm)
    except ValueError:
        return  # an algorithm hashlib lacks: nothing to check against
    digest.update(head[:448] + bytes(64) + head[512:4096] + area)
    stored = head[448 : 448 + digest.digest_size]
    if not hmac.compare_digest(digest.digest(), stored):
        raise LuksError("LUKS2 header checksum does not match: the header is damaged")


def _kdf(kdf: dict[str, Any], secret: bytes, length: int) -> bytes:
    kind = kdf["type"]
    if kind == "pbkdf2":
        return hashlib.pbkdf2_hmac(kdf["hash"], secret, kdf["salt"], int(kdf["iterations"]), length)
    if kind in ("argon2i", "argon2id"):
        from argon2.low_level import Type, hash_secret_raw

        return bytes(hash_secret_raw(
            secret, kdf["salt"], time_cost=int(kdf["time"]), memory_cost=int(kdf["memory"]),
            parallelism=int(kdf["cpus"]), hash_len=length,
            type=Type.ID if kind == "argon2id" else Type.I,
        ))  # fmt: skip
    raise LuksError(f"key derivation {kind!r} is not supported")


def _diffuse(block: bytes, algorithm: str) -> bytes:
    size = hashlib.new(algorithm).digest_size
    out = bytearray()
    for i in range(0, len(block), size):
        piece = block[i : i + size]
        out += hashlib.new(algorithm, struct.pack(">I", i // size) + piece).digest()[: len(piece)]
    return bytes(out)


def af_merge(material: bytes, key_size: int, stripes: int, algorithm: str) -> bytes:
    """The anti-forensic split (LUKS1 spec, section 2.4) undone."""
    d = bytes(key_size)
    for i in range(stripes - 1):
        stripe = material[i * key_size : (i + 1) * key_size]
        d = _diffuse(bytes(a ^ b for a, b in zip(d, stripe, strict=True)), algorithm)
    last = material[(stripes - 1) * key_size : stripes * key_size]
    return bytes(a ^ b for a, b in zip(d, last, strict=True))


class SectorCipher:
    """Decrypts whole sectors of one ``cipher-mode-iv`` spec with one key, vectorised."""

    def __init__(self, spec: str, key: bytes, sector_size: int = SECTOR) -> None:
        # here, not at the top: every process that loads the plugins (a scan's parent and
        # its workers) would import cryptography's ciphers (~20 ms) for volumes it never
        # unlocks
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        parts = spec.lower().split("-", 2)
        if len(parts) < 2 or parts[0] != "aes":
            raise LuksError(f"cipher {spec!r} is not supported (AES only)")
        self.mode = parts[1]
        self.iv = parts[2] if len(parts) > 2 else "plain"
        self.sector_size = sector_size
        if self.mode == "xts" and self.iv in ("plain64", "plain", "plain64be"):
            half = len(key) // 2
            self._data = Cipher(algorithms.AES(key[:half]), modes.ECB())
            self._tweak = Cipher(algorithms.AES(key[half:]), modes.ECB())
        elif self.mode == "cbc" and self.iv in ("essiv:sha256", "plain64", "plain"):
            self._data = Cipher(algorithms.AES(key), modes.ECB())
            if self.iv.startswith("essiv"):
                salt = hashlib.sha256(key).digest()
                self._tweak = Cipher(algorithms.AES(salt), modes.ECB())
            else:
                self._tweak = None  # type: ignore[assignment]
        else:
            raise LuksError(f"cipher mode {spec!r} is not supported")

    def _ivs(self, first: int, count: int) -> bytes:
        import numpy as np  # here, not at the top: the scan's workers load every plugin

        numbers = np.arange(first, first + count, dtype=np.uint64)
        if self.iv == "plain":
            numbers &= np.uint64(0xFFFFFFFF)
        raw = np.zeros((count, 2), "<u8")
        if self.iv == "plain64be":
            raw = np.zeros((count, 2), ">u8")
            raw[:, 1] = numbers
        else:
            raw[:, 0] = numbers
        return raw.tobytes()

    def decrypt(self, data: bytes, first_sector: int) -> bytes:
        """Whole sectors; ``first_sector`` is the IV number of the first."""
        import numpy as np

        count = len(data) // self.sector_size
        if count == 0:
            return b""
        blocks = self.sector_size // 16
        ivs = self._ivs(first_sector, count)
        if self.mode == "xts":
            t = np.frombuffer(self._tweak.encryptor().update(ivs), "<u8").reshape(count, 2)
            tweaks = np.empty((count, blocks, 2), np.uint64)
            lo, hi = t[:, 0].copy(), t[:, 1].copy()
            for j in range(blocks):  # T_j = T_0 * x^j in GF(2^128), XTS's little-endian order
                tweaks[:, j, 0], tweaks[:, j, 1] = lo, hi
                carry = hi >> np.uint64(63)
                hi = (hi << np.uint64(1)) | (lo >> np.uint64(63))
                lo = (lo << np.uint64(1)) ^ (carry * np.uint64(0x87))
            whitened = np.frombuffer(data, "<u8").reshape(count, blocks, 2) ^ tweaks
            plain = np.frombuffer(self._data.decryptor().update(whitened.tobytes()), "<u8")
            return (plain.reshape(count, blocks, 2) ^ tweaks).tobytes()
        if self._tweak is not None:  # ESSIV: IV = E_salt(sector number)
            ivs = self._tweak.encryptor().update(ivs)
        cipher = np.frombuffer(data, np.uint8).reshape(count, blocks, 16)
        previous = np.empty_like(cipher)
        previous[:, 0] = np.frombuffer(ivs, np.uint8).reshape(count, 16)
        previous[:, 1:] = cipher[:, :-1]
        plain = np.frombuffer(self._data.decryptor().update(data), np.uint8)
        return (plain.reshape(count, blocks, 16) ^ previous).tobytes()


def master_key(header: Header, read: Callable[[int, int], bytes], secret: bytes) -> bytes | None:
    """The volume key that ``secret`` opens, or ``None`` when no key slot takes it."""
    for slot in header.slots:
        derived = _kdf(slot.kdf, secret, slot.area_key_size)
        length = slot.key_size * slot.stripes
        padded = -(-length // SECTOR) * SECTOR
        material = read(slot.area_offset, padded)
        if len(material) < padded:
            raise LuksError(f"key slot {slot.number} area is truncated")
        plain = SectorCipher(slot.area_cipher, derived).decrypt(material, 0)[:length]
        key = af_merge(plain, slot.key_size, slot.stripes, slot.af_hash)
        for d in header.digests:
            if slot.digest_ids and d["id"] not in slot.digest_ids:
                continue
            check = hashlib.pbkdf2_hmac(d["hash"], key, d["salt"], d["iterations"],
                                        len(d["digest"]))  # fmt: skip
            if hmac.compare_digest(check, d["digest"]):
                return key
    return None


def key_size_of(header: Header) -> int:
    return header.key_size or (header.slots[0].key_size if header.slots else 0)
