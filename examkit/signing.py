"""Examiner signing keys (Ed25519): the custody-log head is signed at the end of each run.

``examkit key generate`` writes a private key (PEM, mode 0600) and its public
key. A key is *configured* when ``EXAMKIT_SIGNING_KEY`` names a private key
file, or when the default file (user config folder, ``examkit/signing-key.pem``)
exists. The case keeps each public key that signed in ``signing_keys`` and each
signature in ``signatures`` (both append-only), so anyone can check the
signatures from the case file alone.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .clock import utc_now
from .errors import UsageError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ENV = "EXAMKIT_SIGNING_KEY"


def default_key_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("examkit")) / "signing-key.pem"


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()


@dataclass(frozen=True)
class Signer:
    """A loaded private key."""

    path: Path
    private_pem: bytes

    def _key(self) -> Ed25519PrivateKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        key = load_pem_private_key(self.private_pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise UsageError(f"{self.path} is not an Ed25519 key",
                             "make one with 'examkit key generate'")  # fmt: skip
        return key

    @property
    def public_raw(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        raw: bytes = self._key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return raw

    def sign(self, message: bytes) -> bytes:
        signature: bytes = self._key().sign(message)
        return signature


def generate_key(path: Path, overwrite: bool = False) -> tuple[Path, str]:
    """Write a new Ed25519 private key to ``path`` (0600) and ``path.pub``; returns the key id."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    path = Path(path)
    if path.exists() and not overwrite:
        raise UsageError(f"{path} already exists", "choose another --out, or keep the old key")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public = key.public_key()
    pub_path = path.with_name(path.name + ".pub")
    pub_path.write_bytes(public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return pub_path, key_id(public.public_bytes(Encoding.Raw, PublicFormat.Raw))


def configured_signer() -> Signer | None:
    """The examiner's key if one is configured (see the module doc), else None."""
    named = os.environ.get(ENV)
    path = Path(named) if named else default_key_path()
    if not path.is_file():
        if named:
            raise UsageError(f"{ENV} names {path}, which does not exist",
                             "create it with 'examkit key generate'")  # fmt: skip
        return None
    return Signer(path, path.read_bytes())


def sign_entry(conn: sqlite3.Connection, signer: Signer, seq: int, examiner: str | None) -> None:
    """Sign custody entry ``seq`` (its hash) and record the key and signature in the case."""
    (entry_hash,) = conn.execute("SELECT hash FROM custody_log WHERE seq = ?", (seq,)).fetchone()
    public = signer.public_raw
    kid = key_id(public)
    conn.execute(
        "INSERT OR IGNORE INTO signing_keys (key_id, public_key, examiner, added_utc)"
        " VALUES (?, ?, ?, ?)",
        (kid, public.hex(), examiner, utc_now()),
    )
    conn.execute(
        "INSERT INTO signatures (seq, entry_hash, key_id, signature, signed_utc)"
        " VALUES (?, ?, ?, ?, ?)",
        (seq, entry_hash, kid, signer.sign(entry_hash.encode("ascii")).hex(), utc_now()),
    )


def verify_signatures(conn: sqlite3.Connection) -> tuple[int, list[str]]:
    """Check every signature against the log and the stored key: ``(checked, problems)``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys = {
        k: bytes.fromhex(p) for k, p in conn.execute("SELECT key_id, public_key FROM signing_keys")
    }
    problems = []
    checked = 0
    for seq, entry_hash, kid, signature in conn.execute(
        "SELECT seq, entry_hash, key_id, signature FROM signatures ORDER BY sig_id"
    ):
        checked += 1
        row = conn.execute("SELECT hash FROM custody_log WHERE seq = ?", (seq,)).fetchone()
        public = keys.get(kid)
        if row is None or row[0] != entry_hash:
            problems.append(f"signature on entry {seq}: the entry is not the one that was signed")
        elif public is None or key_id(public) != kid:
            problems.append(
                f"signature on entry {seq}: signing key {kid[:16]}… is missing or replaced"
            )
        else:
            try:
                Ed25519PublicKey.from_public_bytes(public).verify(
                    bytes.fromhex(signature), entry_hash.encode("ascii")
                )
            except (InvalidSignature, ValueError):
                problems.append(f"signature on entry {seq} does not verify with key {kid[:16]}…")
    return checked, problems
