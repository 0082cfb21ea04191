"""The custody log: append-only, each entry chained to the one before by SHA-256."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from .clock import utc_now

GENESIS = "0" * 64


def canonical(value: Any) -> str:
    """Canonical JSON: sorted keys, no insignificant white space, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(seq: int, utc: str, actor: str | None, action: str, details: str, prev: str) -> str:
    """SHA-256 over the canonical encoding of an entry's fields and the previous hash."""
    payload = canonical([seq, utc, actor, action, details, prev])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def append(
    conn: sqlite3.Connection, action: str, actor: str | None, details: Mapping[str, Any]
) -> int:
    """Append one entry (inside the caller's transaction) and return its seq."""
    row = conn.execute("SELECT seq, hash FROM custody_log ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
    utc = utc_now()
    text = canonical(dict(details))
    digest = entry_hash(seq, utc, actor, action, text, prev)
    conn.execute(
        "INSERT INTO custody_log (seq, utc, actor, action, details, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (seq, utc, actor, action, text, prev, digest),
    )
    return seq


def verify_chain(conn: sqlite3.Connection) -> tuple[bool, str]:
    """Recompute every hash; ``(ok, message)`` naming the first bad entry."""
    prev = GENESIS
    expected_seq = 1
    count = 0
    for seq, utc, actor, action, details, prev_hash, digest in conn.execute(
        "SELECT seq, utc, actor, action, details, prev_hash, hash FROM custody_log ORDER BY seq"
    ):
        if seq != expected_seq:
            return False, f"entry {expected_seq} is missing (next is {seq})"
        if prev_hash != prev:
            return False, f"entry {seq} ({action}) does not follow entry {seq - 1}"
        if entry_hash(seq, utc, actor, action, details, prev_hash) != digest:
            return False, f"entry {seq} ({action}) was changed after it was written"
        prev, expected_seq, count = digest, seq + 1, count + 1
    return True, f"{count} entries, chain intact"
