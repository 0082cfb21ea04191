"""The case database: one SQLite file per case, created and migrated here."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from . import __version__, custody
from .clock import utc_now
from .errors import CaseError, IntegrityError, UsageError
from .integrity import state_digest
from .schema import MIGRATIONS, SCHEMA_VERSION

if TYPE_CHECKING:  # imported when Case.db is first used (a scan does not use it)
    import sqlite_utils


class Case:
    """An open case database. Use :meth:`create` or :meth:`open`.

    ``conn`` is the connection every write and the scan's reads go through; ``db``, the
    sqlite-utils view of it that queries and reports read with, is made when first used
    (importing sqlite-utils takes ~0.1 s, which a scan's listing worker and its parent
    would otherwise spend before the first file is listed)."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self._db: sqlite_utils.Database | None = None

    @property
    def db(self) -> sqlite_utils.Database:
        if self._db is None:
            self._db = _sqlite_utils().Database(self.conn)
        return self._db

    def rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        """Rows as dicts (as ``db.query`` gives them), through the plain connection."""
        cursor = self.conn.execute(sql, params)
        keys = [d[0] for d in cursor.description]
        for row in cursor:
            yield dict(zip(keys, row, strict=True))

    # -- opening ---------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: Path,
        case_number: str | None = None,
        title: str | None = None,
        agency: str | None = None,
        examiner: str | None = None,
    ) -> Case:
        """Create a new case file; refuses to overwrite an existing file."""
        path = Path(path)
        if path.exists():
            raise UsageError(f"{path} already exists", "open it instead, or choose another name")
        if not path.parent.exists():
            raise CaseError(
                f"folder {path.parent} does not exist", "create it first, or give another path"
            )
        conn: sqlite3.Connection | None = None
        try:  # from the file's first byte (connecting writes it): a Ctrl-C while connecting
            conn = _connect(path)  # left an empty file that later runs refused to open
            case = cls(path, conn)
            case._initialise(case_number, title, agency, examiner)
        except BaseException:  # interrupted or failed: remove the half-made file, it is ours
            if conn is not None:
                conn.close()
            for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm"),
                             Path(f"{path}-journal")):  # fmt: skip
                leftover.unlink(missing_ok=True)
            raise
        return case

    def _initialise(
        self, case_number: str | None, title: str | None, agency: str | None,
        examiner: str | None,
    ) -> None:  # fmt: skip
        case, path = self, self.path
        with case.transaction():
            _migrate(case.conn, 0)
            case.conn.execute(
                "INSERT INTO case_info (id, case_number, title, agency, examiner, created_utc,"
                " schema_version, examkit_version) VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                (
                    case_number or path.stem,
                    title,
                    agency,
                    examiner,
                    utc_now(),
                    SCHEMA_VERSION,
                    __version__,
                ),
            )
            custody.append(
                case.conn,
                "case_created",
                examiner,
                {
                    "case_number": case_number or path.stem,
                    "title": title,
                    "agency": agency,
                    "examkit_version": __version__,
                    "schema_version": SCHEMA_VERSION,
                    "state": state_digest(case.conn),
                },
            )

    @classmethod
    def open(cls, path: Path) -> Case:
        """Open an existing case file, migrating an older schema forward."""
        path = Path(path)
        if not path.is_file():
            raise CaseError(f"no case file at {path}", "create one with 'examkit case init'")
        version = _probe(path)  # read only: a file that is not ours is never written to
        if version > SCHEMA_VERSION:
            raise CaseError(
                f"{path} uses schema version {version}; this examkit knows up to {SCHEMA_VERSION}",
                "open it with a newer examkit",
            )
        case = cls(path, _connect(path))
        if version < SCHEMA_VERSION:
            with case.transaction():
                _migrate(case.conn, version)
        return case

    @classmethod
    def open_or_create(cls, path: Path, examiner: str | None = None) -> Case:
        return cls.open(path) if Path(path).exists() else cls.create(path, examiner=examiner)

    def schema_version(self) -> int:
        try:
            row = self.conn.execute("SELECT schema_version FROM case_info WHERE id = 1").fetchone()
        except sqlite3.DatabaseError as exc:
            raise CaseError(
                f"{self.path} is not an examkit case database ({exc})",
                "check the path; examkit never changes a file it did not create",
            ) from exc
        if row is None:
            raise CaseError(f"{self.path} has no case_info row", "the case file is damaged")
        return int(row[0])

    def close(self) -> None:
        with suppress(sqlite3.Error):
            self.conn.close()

    def __enter__(self) -> Case:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed on success, rolled back on any error."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            _rollback(conn)
            raise CaseError(f"cannot write {self.path}: {exc}", _storage_hint(exc)) from exc
        except BaseException:
            _rollback(conn)
            raise

    def log(self, action: str, actor: str | None, details: Mapping[str, Any]) -> int:
        """Append a custody entry in its own transaction."""
        with self.transaction() as conn:
            return custody.append(conn, action, actor, details)

    # -- reading ---------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return next(self.rows("SELECT * FROM case_info WHERE id = 1"))

    def evidence(self, evidence_id: str) -> dict[str, Any] | None:
        rows = list(self.rows("SELECT * FROM evidence WHERE evidence_id = ?", [evidence_id]))
        return rows[0] if rows else None

    def mark_stale_runs(self) -> list[int]:
        """Runs left 'running' by a process that no longer exists become 'interrupted'."""
        host = socket.gethostname()
        stale = []
        for row in self.rows(
            "SELECT run_id, host, pid FROM runs WHERE status = 'running' ORDER BY run_id"
        ):
            if row["host"] == host and row["pid"] and _alive(int(row["pid"])):
                continue
            if not self.conn.execute(
                "SELECT 1 FROM custody_log WHERE action IN ('run_started', 'run_resumed')"
                " AND json_extract(details, '$.run_id') = ?",
                (row["run_id"],),
            ).fetchone():
                raise IntegrityError(
                    f"run {row['run_id']} is in the runs table but was never started on the record",
                    "the case database was edited outside examkit; run 'examkit verify'",
                )
            stale.append(int(row["run_id"]))
        for run_id in stale:
            with self.transaction() as conn:
                conn.execute(
                    "UPDATE runs SET status = 'interrupted', finished_utc = ?,"
                    " error = coalesce(error, 'process ended without closing the run')"
                    " WHERE run_id = ?",
                    (utc_now(), run_id),
                )
                custody.append(
                    conn,
                    "run_interrupted",
                    None,
                    {
                        "run_id": run_id,
                        "reason": "process ended without closing the run",
                        "state": state_digest(conn),  # what the run left, as found
                    },
                )
        return stale


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection to the case file that can write nothing to it."""
    return sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=30)


def _probe(path: Path) -> int:
    """The schema version of an examkit case, read without writing anything to the file."""
    try:
        conn = connect_read_only(path)
    except sqlite3.Error as exc:
        raise CaseError(f"cannot open {path}: {exc}", "check the path and its permissions") from exc
    try:
        row = conn.execute("SELECT schema_version FROM case_info WHERE id = 1").fetchone()
    except sqlite3.DatabaseError as exc:
        raise CaseError(
            f"{path} is not an examkit case database ({exc})",
            "check the path; examkit never changes a file it did not create",
        ) from exc
    finally:
        conn.close()
    if row is None or not isinstance(row[0], int):
        raise CaseError(f"{path} has no valid case_info row", "the case file is damaged")
    return int(row[0])


def _sqlite_utils() -> Any:
    """sqlite-utils, imported without pandas.

    sqlite-utils imports pandas at import time when it is installed (case-utils
    brings it) only to map ``pandas.Timestamp`` columns, which examkit never
    writes; that import cost ~0.25 s in every command and every listing worker.
    pandas stays importable afterwards for whatever needs it.
    """
    import sys

    if "sqlite_utils" in sys.modules or "pandas" in sys.modules:
        import sqlite_utils

        return sqlite_utils
    sys.modules["pandas"] = None  # type: ignore[assignment]  # "import pandas" fails
    try:
        import sqlite_utils
    finally:
        del sys.modules["pandas"]
    return sqlite_utils


def _connect(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA recursive_triggers = ON")  # as sqlite-utils sets it (see Case.db)
    except sqlite3.DatabaseError as exc:
        raise CaseError(
            f"cannot open {path} as a case database: {exc}",
            "check the path; is it an examkit case file on a writable disk?",
        ) from exc
    return conn


def _migrate(conn: sqlite3.Connection, current: int) -> None:
    for version in sorted(v for v in MIGRATIONS if v > current):
        for statement in _statements(MIGRATIONS[version]):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_utc, examkit_version)"
            " VALUES (?, ?, ?)",
            (version, utc_now(), __version__),
        )
        if current:
            conn.execute("UPDATE case_info SET schema_version = ? WHERE id = 1", (version,))


def _statements(script: str) -> Iterator[str]:
    """Split a migration script into statements (triggers keep their inner ';')."""
    buffer: list[str] = []
    for line in script.splitlines():
        buffer.append(line)
        joined = "\n".join(buffer).strip()
        if joined and sqlite3.complete_statement(joined):
            yield joined
            buffer = []
    rest = "\n".join(buffer).strip()
    if rest:
        yield rest


def _rollback(conn: sqlite3.Connection) -> None:
    with suppress(sqlite3.Error):
        conn.execute("ROLLBACK")


def _storage_hint(exc: sqlite3.OperationalError) -> str:
    text = str(exc).lower()
    if "full" in text:
        return "the disk holding the case file is full; free space and run again"
    if "readonly" in text or "read-only" in text:
        return "the case file or its folder is read-only"
    if "locked" in text:
        return "another examkit process is writing this case; wait for it to finish"
    return "check the disk holding the case file"


def dumps(value: Any) -> str:
    """JSON for TEXT columns: stable key order, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)
