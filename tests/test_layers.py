"""Volume-layer framework: --unlock parsing, secrets kept out of records, sector ciphers.

The sector ciphers are checked against ``cryptography``'s own XTS and CBC modes,
run one sector at a time (the independent oracle for the vectorised code).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from examkit.errors import UsageError
from examkit.layers import Secret, Unlock, chain_steps, chain_text, parse_unlock, secrets_for
from examkit.runs import redact_argv
from examkit_plugins.volumes.luks_format import SectorCipher, af_merge


def test_parse_unlock_kinds(tmp_path: Path) -> None:
    key = tmp_path / "k.bin"
    key.write_bytes(b"\x00\x01secret")
    assert parse_unlock("*=password:pa:ss").secret == Secret("password", b"pa:ss")
    u = parse_unlock("1234-abcd=recovery-key:111111-222222")
    assert (u.volume, u.secret.kind, u.secret.value) == ("1234-abcd", "recovery-key",
                                                          b"111111-222222")  # fmt: skip
    rel = parse_unlock("2=key-file:k.bin", tmp_path)
    assert rel.secret.value == b"\x00\x01secret" and rel.secret.kind == "key-file"


@pytest.mark.parametrize("text", ["hunter2", "v=hunter2", "v=pin:hunter2", "=password:hunter2"])
def test_malformed_unlock_never_echoes_the_secret(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_unlock(text)
    assert "hunter2" not in info.value.message and "hunter2" not in info.value.hint


def test_missing_key_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read key file"):
        parse_unlock(f"*=key-file:{tmp_path / 'none'}")


def test_secret_repr_hides_value() -> None:
    unlock = parse_unlock("*=password:hunter2")
    assert "hunter2" not in repr(unlock) and "hunter2" not in str(unlock.secret)
    assert unlock.describe() == "* (password)"


def test_redact_argv() -> None:
    argv = ["examkit", "scan", "--unlock", "v1=password:hunter2", "--unlock=*=recovery-key:12-34",
            "--unlock", "x=key-file:/keys/a.key", "--unlock", "hunter2", "img.raw"]  # fmt: skip
    red = redact_argv(argv)
    assert not any("hunter2" in a or "12-34" in a for a in red)
    assert red[3] == "v1=password:(withheld)" and red[6] == "x=key-file:/keys/a.key"
    assert red[-1] == "img.raw"


def test_secrets_for_selectors() -> None:
    by_uuid = Unlock("ABC-1", Secret("password", b"a"))
    by_index = Unlock("3", Secret("password", b"b"))
    wild = Unlock("*", Secret("key-file", b"c"))
    unlocks = [wild, by_uuid, by_index]
    assert [s.value for s in secrets_for(unlocks, 3, {"uuid": "abc-1"})] == [b"a", b"b", b"c"]
    assert [s.value for s in secrets_for(unlocks, 5, {"guid": "{zzz}"})] == [b"c"]


def test_chain_round_trip() -> None:
    steps = [("lvm", 1048576, 4 << 20, "root"), ("luks", 0, 3 << 20, "decrypted")]
    assert chain_steps(chain_text(steps)) == steps
    assert chain_text([]) is None and chain_steps(None) == []


@pytest.mark.parametrize("sector_size", [512, 4096])
def test_xts_matches_cryptography(sector_size: int) -> None:
    key = hashlib.sha512(b"xts key").digest()
    plain = os.urandom(sector_size * 5)
    first = 1_000_003
    cipher = b"".join(
        Cipher(algorithms.AES(key), modes.XTS((first + i).to_bytes(16, "little")))
        .encryptor()
        .update(plain[i * sector_size : (i + 1) * sector_size])
        for i in range(5)
    )
    assert SectorCipher("aes-xts-plain64", key, sector_size).decrypt(cipher, first) == plain


def test_cbc_essiv_matches_cryptography() -> None:
    key = hashlib.sha256(b"cbc key").digest()
    salt_key = hashlib.sha256(key).digest()
    plain = os.urandom(512 * 4)
    out = b""
    for i in range(4):
        iv = (
            Cipher(algorithms.AES(salt_key), modes.ECB())
            .encryptor()
            .update((7 + i).to_bytes(16, "little"))
        )
        out += (
            Cipher(algorithms.AES(key), modes.CBC(iv))
            .encryptor()
            .update(plain[i * 512 : (i + 1) * 512])
        )
    assert SectorCipher("aes-cbc-essiv:sha256", key).decrypt(out, 7) == plain


def test_unsupported_cipher_is_refused() -> None:
    from examkit_plugins.volumes.luks_format import LuksError

    with pytest.raises(LuksError, match="not supported"):
        SectorCipher("serpent-xts-plain64", bytes(64))


def test_af_merge_inverts_split() -> None:
    """AF split as the LUKS1 spec writes it (random stripes, diffuse, xor), then merged."""
    from examkit_plugins.volumes.luks_format import _diffuse

    key, stripes = os.urandom(32), 7
    d = bytes(32)
    parts = []
    for _ in range(stripes - 1):
        s = os.urandom(32)
        parts.append(s)
        d = _diffuse(bytes(a ^ b for a, b in zip(d, s, strict=True)), "sha1")
    parts.append(bytes(a ^ b for a, b in zip(d, key, strict=True)))
    assert af_merge(b"".join(parts), 32, stripes, "sha1") == key
