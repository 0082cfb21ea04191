"""The files table's digest indexes, set aside while a scan hashes many streams.

Each result row written while ``files_md5``, ``files_sha1`` and ``files_sha256``
exist changes a page at a random place in each of three B-trees, and every
commit writes those pages again (measured on 100,000 small files: 2.27 GB
written to the case for a 63 MB file, and 6.5 s more of the writer's CPU, than
with the indexes built once at the end in 0.4 s). So a scan drops them once it
has handed out more streams than a quarter of the case's other rows (a small
item added to a large case keeps them: rebuilding would cost more) and builds
them again, from the same definitions, as the item's hashing ends (while its last
few streams are hashed: ``examkit.dispatch.EARLY_RESTORE``). A scan
that stops on the way (interrupted, killed) leaves them to the next scan of the
case, which builds them once its items are done; reading the case without them
is slower, never wrong.
"""

from __future__ import annotations

import sqlite3

from .case import Case

# index name -> column, as the schema creates them (schema.py, version 1)
DIGEST_INDEXES = {"files_md5": "md5", "files_sha1": "sha1", "files_sha256": "sha256"}
SHARE = 4  # dropped once the streams handed out exceed the case's other rows / SHARE


def missing(conn: sqlite3.Connection) -> list[str]:
    """The digest indexes the case does not have."""
    have = {
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'files'"
        )
    }
    return [name for name in DIGEST_INDEXES if name not in have]


def threshold(case: Case, evidence_id: str) -> int:
    """Streams a run may hand out for ``evidence_id`` before the indexes are dropped."""
    (others,) = case.conn.execute(
        "SELECT count(*) FROM files WHERE NOT (evidence_id = ? AND status = 'pending')",
        (evidence_id,),
    ).fetchone()
    return int(others) // SHARE


def drop(case: Case) -> None:
    """Drop the digest indexes (one transaction)."""
    with case.transaction() as conn:
        for name in DIGEST_INDEXES:
            conn.execute(f"DROP INDEX IF EXISTS {name}")


def restore(case: Case) -> list[str]:
    """Build the digest indexes the case lacks (one transaction); returns their names."""
    if not (names := missing(case.conn)):
        return []
    with case.transaction() as conn:
        for name in names:
            conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON files({DIGEST_INDEXES[name]})")
    return names
