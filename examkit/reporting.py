"""Reports, built from the case database alone (report plugins render them).

A report plugin (``ReportFormat``, registered with ``register_report_formats``)
gets a :class:`ReportData`: a read-only view of one case with everything a
report shows, already decoded (JSON columns as objects). It never reads
evidence. Names of flagged files reach a plugin only through
``ReportData.gate`` (``path``/``name`` withheld unless the examiner asked,
which is logged). :func:`write_report` writes the file atomically, records
its SHA-256 in the custody log and signs that entry (and writes ``OUT.sig``)
when the examiner has a key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import IO, Any

from . import __version__, custody
from .case import Case
from .display import DisplayPolicy
from .errors import UsageError
from .integrity import state_differences
from .locking import case_lock
from .query import list_hits
from .signing import configured_signer, key_id, sign_entry, verify_signatures

_JSON_COLUMNS = ("source_paths", "container_metadata", "command_line", "evidence_ids", "options",
                 "tool_versions", "plugin_versions", "counts", "algorithms", "provenance",
                 "category_profile", "metadata", "digests")  # fmt: skip


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for key in _JSON_COLUMNS:
        if key in row and isinstance(row[key], str):
            with contextlib.suppress(ValueError):
                row[key] = json.loads(row[key])
    return row


def exact_path(row: dict[str, Any]) -> str | bytes:
    """A file row's path for the display gate: the exact bytes when the name is not UTF-8.

    ``path`` keeps a bad byte as the text ``\\xNN``, which the gate would show
    with its backslash escaped; from ``path_bytes`` the gate shows ``\\xNN``.
    In cases written by examkit before this was fixed, a stream row's
    ``path_bytes`` lacks the ``:stream`` suffix of its ``path``; the bytes are
    used only when they give the same text.
    """
    text = str(row.get("path") or "")
    raw = row.get("path_bytes")
    if not isinstance(raw, bytes):
        return text
    stream = row.get("stream")
    candidates = [raw]
    if stream is not None:
        candidates.append(raw + b":" + str(stream).encode("utf-8", "surrogateescape"))
    for candidate in candidates:
        if candidate.decode("utf-8", "backslashreplace") == text:
            return candidate
    return text


class ReportData:
    """Everything a report shows, read from one open case."""

    def __init__(self, case: Case, show_names: bool = False) -> None:
        self.case = case
        self.gate = DisplayPolicy(show_flagged_names=show_names)
        self.show_names = show_names

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return [_decode(dict(r)) for r in self.case.db.query(sql, params)]

    @cached_property
    def info(self) -> dict[str, Any]:
        return self.case.info()

    @cached_property
    def evidence(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM evidence ORDER BY added_utc, evidence_id")

    @cached_property
    def runs(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM runs ORDER BY run_id")

    @cached_property
    def hashsets(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM hashsets ORDER BY hashset_id")

    @cached_property
    def volumes(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM volumes ORDER BY evidence_id, idx")

    @cached_property
    def filesystems(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM filesystems ORDER BY filesystem_id")

    def files(self, evidence_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Every ``files`` row (streamed, file_id order). Use ``gate`` for path and name."""
        sql = "SELECT * FROM files"
        params: tuple[Any, ...] = ()
        if evidence_id:
            sql += " WHERE evidence_id = ?"
            params = (evidence_id,)
        for row in self.case.db.query(sql + " ORDER BY file_id", params):
            yield _decode(dict(row))

    def matches(self) -> Iterator[dict[str, Any]]:
        for row in self.case.db.query("SELECT * FROM matches ORDER BY match_id"):
            yield _decode(dict(row))

    @cached_property
    def hits(self) -> list[dict[str, Any]]:
        """Flagged files (known-bad, alerting), one row per file, set and entry; shadow-copy
        files with the content of one listed are folded into it (``snapshot_copies``)."""
        return [dict(r) for r in list_hits(self.case)]

    @cached_property
    def hit_summary(self) -> list[dict[str, Any]]:
        """Hits by set and category: files, and how many match victim-identified entries."""
        return self._rows(
            "SELECT h.name AS hashset, m.category, m.category_label,"
            " count(DISTINCT m.file_id) AS files,"
            " count(DISTINCT CASE WHEN m.victim_identified = 1 THEN m.file_id END)"
            " AS victim_identified_files"
            " FROM matches m JOIN hashsets h ON h.hashset_id = m.hashset_id"
            " JOIN files f ON f.file_id = m.file_id"
            " WHERE m.alert = 1 AND f.same_content_as IS NULL"  # snapshot copies count once
            " GROUP BY h.name, m.category, m.category_label"
            " ORDER BY h.name, m.category"
        )

    @cached_property
    def counts(self) -> dict[str, int]:
        files, flagged, good, hashed = self.case.conn.execute(
            "SELECT count(*), coalesce(sum(flagged), 0), coalesce(sum(known_good), 0),"
            " coalesce(sum(status = 'ok'), 0) FROM files"
        ).fetchone()
        return {"files": files, "flagged": flagged, "known_good": good, "hashed": hashed}

    @cached_property
    def custody(self) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT seq, utc, actor, action, details, prev_hash, hash FROM custody_log ORDER BY seq"
        )

    @cached_property
    def integrity(self) -> dict[str, Any]:
        """Chain, signature and result-state status, as ``examkit verify`` sees them."""
        chain_ok, chain = custody.verify_chain(self.case.conn)
        checked, bad = verify_signatures(self.case.conn)
        state_seq, changed = state_differences(self.case.conn)
        keys = self._rows("SELECT key_id, examiner, added_utc FROM signing_keys ORDER BY added_utc")
        return {
            "chain_ok": chain_ok,
            "chain": chain,
            "signatures_checked": checked,
            "signature_problems": bad,
            "state_seq": state_seq,
            "state_problems": changed,
            "signing_keys": keys,
            "ok": chain_ok and not bad and not changed,
        }


class ReportFormat(ABC):
    """A report format plugin (``register_report_formats``)."""

    name: str
    description: str = ""
    version: str = "1"
    priority: int = 50
    extension: str = ""  # default file name extension, e.g. ".html"

    @abstractmethod
    def write(self, data: ReportData, out: IO[bytes]) -> None:
        """Render the report to ``out`` from ``data`` only."""


@dataclass(frozen=True)
class ReportResult:
    path: str
    format: str
    sha256: str
    size: int
    seq: int  # the custody entry that records it
    signed_by: str | None  # key id, when signed
    integrity_ok: bool


def write_report(
    case_path: Path,
    fmt: ReportFormat,
    out_path: Path,
    show_names: bool = False,
    actor: str | None = None,
) -> ReportResult:
    """Render ``fmt`` from the case into ``out_path`` and put it on the record."""
    out_path = Path(out_path)
    if out_path.exists() and out_path.is_dir():
        raise UsageError(f"{out_path} is a folder", "give a file name with -o")
    signer = configured_signer()
    with case_lock(case_path, f"report --format {fmt.name}"), Case.open(case_path) as case:
        data = ReportData(case, show_names)
        if show_names:
            case.log("names_revealed", actor, {"command": f"report --format {fmt.name}",
                                               "files": data.counts["flagged"]})  # fmt: skip
        partial = out_path.with_name(f".{out_path.name}.partial")
        try:
            with open(partial, "wb") as fh:
                fmt.write(data, fh)
            os.replace(partial, out_path)
        finally:
            partial.unlink(missing_ok=True)
        content = out_path.read_bytes()
        sha256 = hashlib.sha256(content).hexdigest()
        integrity_ok = bool(data.integrity["ok"])
        with case.transaction() as conn:
            seq = custody.append(
                conn,
                "report_generated",
                actor,
                {"format": fmt.name, "format_version": fmt.version, "path": str(out_path.resolve()),
                 "sha256": sha256, "size": len(content), "show_names": show_names,
                 "examkit_version": __version__, "integrity_ok": integrity_ok},
            )  # fmt: skip
            signed_by = None
            if signer is not None:
                sign_entry(conn, signer, seq, actor)
                signed_by = key_id(signer.public_raw)
        if signer is not None:
            signature = signer.sign(sha256.encode("ascii")).hex()
            Path(f"{out_path}.sig").write_text(
                json.dumps(
                    {
                        "file": out_path.name,
                        "sha256": sha256,
                        "key_id": signed_by,
                        "public_key": signer.public_raw.hex(),
                        "algorithm": "Ed25519",
                        "signature": signature,
                        "signed": "sha256 hex, ASCII",
                    },
                    indent=2,
                )
                + "\n"
            )
    return ReportResult(str(out_path), fmt.name, sha256, len(content), seq, signed_by,
                        integrity_ok)  # fmt: skip
