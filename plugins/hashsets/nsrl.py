"""NIST NSRL Reference Data Set v3 loader (SQLite); RDS 2.x/1.5 text is in ``nsrl_rds2``.

RDS v3 ships one SQLite database per build (``FILE``, ``PKG``, ``OS``, ``MFG``,
``VERSION``; hex upper-case). Releases differ in how they name things (the full
RDS has ``FILE`` as a view over ``METADATA``, the minimal one a table), so the
file table/view and its columns are found by introspection. The database is
opened read-only and immutable: nothing is ever written next to the evidence of
what was loaded (no ``-wal``, ``-shm`` or ``-journal`` file).
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from examkit.hashformat import EntrySink, HashSetError, HashSetFormat
from examkit.hookspecs import Register, hookimpl

SQLITE_MAGIC = b"SQLite format 3\x00"
FETCH_ROWS = 20_000  # rows per fetchmany: bounded memory on tables of 10^8+ rows
# decodes TEXT cells without ever failing: invalid UTF-8 bytes survive as surrogates
TOLERANT_TEXT = partial(str, encoding="utf-8", errors="surrogateescape")

CANNOT_READ = "Check the path and the file's permissions."
CORRUPT_HINT = (
    "The database is damaged or incomplete: copy or download it again and check it "
    "against the hash NIST publishes for the release."
)


def _key(name: str) -> str:
    """A column or object name reduced for matching: lower case, letters and digits only."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _clean(text: str) -> str:
    """One line of text for an error message."""
    return " ".join(text.split())


# --------------------------------------------------------------------------- RDS v3 (SQLite)

# reduced column name -> role in an entry
V3_ROLES: dict[str, str] = {
    "md5": "md5",
    "md5hash": "md5",
    "sha1": "sha1",
    "sha1hash": "sha1",
    "sha256": "sha256",
    "sha2256": "sha256",
    "sha256hash": "sha256",
    "crc32": "crc32",
    "crc": "crc32",
    "filename": "name",
    "name": "name",
    "filesize": "size",
    "size": "size",
    "packageid": "package_id",
    "pkgid": "package_id",
    "productcode": "package_id",
}
DIGEST_ROLES = ("md5", "sha1", "sha256")

# reduced VERSION column name -> provenance key
V3_VERSION_KEYS: dict[str, str] = {
    "version": "nsrl_version",
    "buildset": "build_set",
    "builddate": "build_date",
    "releasedate": "release_date",
    "description": "description",
}


@dataclass
class _Relation:
    """A table or view and the roles of its columns."""

    name: str
    kind: str  # "table" or "view"
    roles: dict[str, str] = field(default_factory=dict)  # role -> column name


@dataclass
class _Schema:
    files: _Relation | None
    version: _Relation | None
    names: set[str]  # lower-case names of every table and view

    @property
    def is_nsrl(self) -> bool:
        if self.files is None or "name" not in self.files.roles:
            return False
        version = self.version.roles if self.version is not None else {}
        if "nsrl_version" in version and {"build_set", "build_date", "release_date"} & set(version):
            return True
        return {"pkg", "os", "mfg"} <= self.names


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _connect(path: Path) -> sqlite3.Connection:
    """Open ``path`` read-only and immutable: SQLite writes nothing, locks nothing."""
    uri = path.resolve().as_uri() + "?mode=ro&immutable=1"
    conn = sqlite3.connect(uri, uri=True)
    conn.text_factory = TOLERANT_TEXT
    conn.execute("PRAGMA query_only = ON")
    return conn


def _columns(conn: sqlite3.Connection, relation: str) -> list[str] | None:
    try:
        rows = conn.execute("SELECT name FROM pragma_table_info(?)", (relation,)).fetchall()
    except sqlite3.OperationalError:  # a view over a missing table: not a candidate
        return None
    return [str(r[0]) for r in rows]


def _inspect(conn: sqlite3.Connection) -> _Schema:
    """Find the file table/view (the one with digest columns) and the VERSION table."""
    objects = conn.execute(
        "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid"
    ).fetchall()
    candidates: list[_Relation] = []
    version: _Relation | None = None
    for name, kind in objects:
        cols = _columns(conn, name)
        if cols is None:
            continue
        if name.lower() == "version":
            version = _Relation(name, kind)
            for col in cols:
                key = V3_VERSION_KEYS.get(_key(col))
                if key is not None:
                    version.roles.setdefault(key, col)
            continue
        relation = _Relation(name, kind)
        for col in cols:
            role = V3_ROLES.get(_key(col))
            if role is not None:
                relation.roles.setdefault(role, col)
        if any(r in relation.roles for r in DIGEST_ROLES):
            candidates.append(relation)

    def rank(r: _Relation) -> tuple[bool, bool, int, bool]:
        return (
            r.name.lower() == "file",  # the documented name wins (a view over METADATA ...)
            "name" in r.roles,  # ... over DISTINCT_HASH-like views without names
            sum(d in r.roles for d in DIGEST_ROLES),
            "size" in r.roles,
        )

    files = max(candidates, key=rank) if candidates else None
    return _Schema(files, version, {str(n).lower() for n, _ in objects})


def _check_sqlite_header(path: Path) -> None:
    """Refuse a truncated database before SQLite reads zero-filled pages past its end."""
    with open(path, "rb") as f:
        header = f.read(100)
    if not header.startswith(SQLITE_MAGIC):
        raise HashSetError(f"{path.name}: not a SQLite database", "Is this the right file?")
    if len(header) < 100:
        raise HashSetError(f"{path.name}: truncated SQLite header", CORRUPT_HINT)
    if header[18] == 2 or header[19] == 2:  # WAL mode
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            # immutable=1 ignores the WAL: rows committed only there would be missed
            raise HashSetError(
                f"{path.name}: has a write-ahead log ({wal.name}) not yet merged into it",
                "Merge it on a copy first: sqlite3 COPY.db 'PRAGMA wal_checkpoint(TRUNCATE)'.",
            )
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise HashSetError(f"{path.name}: invalid SQLite page size {page_size}", CORRUPT_HINT)
    pages = int.from_bytes(header[28:32], "big")
    if pages and header[24:28] == header[92:96]:  # the in-header size is valid
        expected = pages * page_size
        actual = path.stat().st_size
        if actual < expected:
            raise HashSetError(
                f"{path.name}: truncated SQLite database ({actual} bytes, header says {expected})",
                CORRUPT_HINT,
            )


def _version_provenance(conn: sqlite3.Connection, version: _Relation) -> dict[str, Any]:
    """The VERSION row as provenance; with several rows, each key holds a list (row order)."""
    keys = [k for k in V3_VERSION_KEYS.values() if k in version.roles]
    if not keys:
        return {}
    cols = ", ".join(_quote(version.roles[k]) for k in keys)
    rows = conn.execute(f"SELECT {cols} FROM {_quote(version.name)}").fetchall()
    if not rows:
        return {}
    if len(rows) == 1:
        return {k: v for k, v in zip(keys, rows[0], strict=True) if v is not None}
    return {k: [row[i] for row in rows] for i, k in enumerate(keys)}


def _digest(value: Any) -> str | bytes | None:
    """A digest cell for the sink: text as is (hex), a BLOB as raw bytes."""
    if value is None or isinstance(value, str | bytes):
        return value
    return str(value)  # a number: cannot be a valid digest, the sink reports it


def _name(value: Any) -> str | bytes | None:
    """A name cell: text, or the raw bytes when it is not valid UTF-8."""
    if value is None or isinstance(value, bytes):
        return value
    text = str(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # surrogates from invalid UTF-8: hand over the bytes
            return text.encode("utf-8", "surrogateescape")
    return text


def _crc(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int):  # stored with numeric affinity: leading zeros lost
        return f"{value:08d}"
    if isinstance(value, bytes):
        return value.hex()
    text = str(value).strip().lower()
    return text or None


def _integer(value: Any) -> int | None:
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


class NsrlV3Format(HashSetFormat):
    """NIST NSRL RDS v3: a SQLite database with FILE/PKG/OS/MFG/VERSION."""

    name = "nsrl-v3"
    description = "NIST NSRL RDS v3 (SQLite: FILE, PKG, OS, MFG, VERSION)"
    version = "1"
    priority = 90

    def detect(self, head: bytes, path: Path) -> bool:
        if not head.startswith(SQLITE_MAGIC):
            return False
        try:
            with closing(_connect(path)) as conn:
                return _inspect(conn).is_nsrl
        except sqlite3.DatabaseError:
            # schema unreadable: claim it if what is left of the schema looks like the
            # RDS, so that read() reports the damage instead of "unknown format"
            low = head.lower()
            return b"build_set" in low or (b"file_name" in low and b"package_id" in low)

    def read(self, path: Path, sink: EntrySink) -> None:
        try:
            _check_sqlite_header(path)
        except OSError as exc:
            raise HashSetError(f"{path.name}: cannot read: {exc.strerror}", CANNOT_READ) from exc
        try:
            with closing(_connect(path)) as conn:
                schema = _inspect(conn)
                files = schema.files
                if files is None:
                    raise HashSetError(
                        f"{path.name}: no table or view with md5/sha1/sha256 columns",
                        "This SQLite database is not an NSRL RDS v3 release.",
                    )
                if schema.version is not None:
                    provenance = _version_provenance(conn, schema.version)
                    if provenance:
                        sink.provenance(**provenance)
                self._stream(conn, files, sink)
        except sqlite3.DatabaseError as exc:
            raise HashSetError(
                f"{path.name}: corrupt or unreadable SQLite database: {_clean(str(exc))}",
                CORRUPT_HINT,
            ) from exc

    @staticmethod
    def _stream(conn: sqlite3.Connection, files: _Relation, sink: EntrySink) -> None:
        roles = ("md5", "sha1", "sha256", "crc32", "name", "size", "package_id")
        cols = ", ".join(_quote(files.roles[r]) if r in files.roles else "NULL" for r in roles)
        query = f"SELECT {cols} FROM {_quote(files.name)}"
        add = sink.add
        row_no = 0
        # sqlite3's own UTF-8 decoding is about twice as fast as a Python text_factory;
        # on the first undecodable cell, go on from the same row with the tolerant one
        conn.text_factory = str
        while True:
            cursor = conn.execute(query if not row_no else f"{query} LIMIT -1 OFFSET {row_no}")
            try:
                while rows := cursor.fetchmany(FETCH_ROWS):
                    for md5, sha1, sha256, crc, name, size, package in rows:
                        row_no += 1
                        meta: dict[str, Any] = {}
                        if crc.__class__ is str:
                            if crc := crc.strip():
                                meta["crc32"] = crc.lower()
                        elif crc is not None:
                            meta["crc32"] = _crc(crc)
                        if package is not None:
                            meta["package_id"] = (
                                package if package.__class__ is int else _integer(package)
                            )
                        add(
                            md5=md5 if md5.__class__ is str else _digest(md5),
                            sha1=sha1 if sha1.__class__ is str else _digest(sha1),
                            sha256=sha256 if sha256.__class__ is str else _digest(sha256),
                            name=name if name.__class__ is str and name.isascii() else _name(name),
                            size=size if size.__class__ is int else _integer(size),
                            meta=meta,
                            line=row_no,
                        )
                return
            except sqlite3.OperationalError as exc:
                if conn.text_factory is not str or "decode" not in str(exc):
                    raise
                conn.text_factory = TOLERANT_TEXT
            finally:
                cursor.close()


@hookimpl
def register_hashset_formats(register: Register) -> None:
    register(NsrlV3Format())
