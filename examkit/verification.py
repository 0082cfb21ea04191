"""``verify``: check a case's custody chain, signatures and results, and optionally its evidence."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import custody
from .case import Case
from .evidence import ALGORITHMS, hash_media, open_media
from .integrity import state_differences
from .signing import verify_signatures


@dataclass(frozen=True)
class VerifyReport:
    case: str
    ok: bool
    entries: int
    chain: str
    signatures: int
    state_seq: int | None  # the custody entry whose result digests were compared
    problems: tuple[str, ...] = ()
    rehashed: tuple[dict[str, Any], ...] = field(default_factory=tuple)


def verify_case(case_path: Path, rehash: bool = False, actor: str | None = None) -> VerifyReport:
    """Check everything; the first problem found comes first. Logged as ``verification_run``."""
    with Case.open(case_path) as case:
        conn = case.conn
        problems: list[str] = []
        chain_ok, chain = custody.verify_chain(conn)
        if chain_ok:  # a run whose process died (crash, full disk) is closed as interrupted,
            case.mark_stale_runs()  # as every command does: its partial writes are examkit's
            chain_ok, chain = custody.verify_chain(conn)
        if not chain_ok:
            problems.append(f"custody log: {chain}")
        signatures, bad_signatures = verify_signatures(conn)
        problems.extend(bad_signatures)
        state_seq, changed = state_differences(conn)
        problems.extend(changed)
        rehashed = tuple(_rehash(case, problems)) if rehash else ()
        (entries,) = conn.execute("SELECT count(*) FROM custody_log").fetchone()
        report = VerifyReport(
            str(case_path), not problems, entries, chain, signatures, state_seq,
            tuple(problems), rehashed,
        )  # fmt: skip
        case.log(
            "verification_run",
            actor,
            {"ok": report.ok, "problems": list(problems[:50]), "rehash": rehash,
             "signatures": signatures, "rehashed": list(rehashed)},
        )  # fmt: skip
    return report


def _rehash(case: Case, problems: list[str]) -> list[dict[str, Any]]:
    """Read every evidence item again and compare its media hashes with the record."""
    from .plugins import registry

    reg = registry()
    results = []
    for row in case.db.query("SELECT * FROM evidence ORDER BY evidence_id"):
        eid = row["evidence_id"]
        recorded = {a: row[f"media_{a}"] or row[f"acquisition_{a}"] for a in ALGORITHMS}
        recorded = {a: v for a, v in recorded.items() if v}
        paths = [Path(p) for p in json.loads(row["source_paths"])]
        try:
            with open_media(reg.get("containers", row["container"]), paths) as media:
                computed = hash_media(media, reg.hashers)
        except Exception as exc:  # an unreadable image is a failed verification, not a crash
            problems.append(f"evidence {eid}: cannot be read again ({exc})")
            results.append({"evidence_id": eid, "result": "unreadable", "error": str(exc)})
            continue
        differ = [a for a, v in recorded.items() if computed.get(a) != v]
        if differ:
            problems.append(
                f"evidence {eid}: media {differ[0]} is now {computed.get(differ[0])},"
                f" recorded {recorded[differ[0]]}"
            )
        results.append(
            {"evidence_id": eid, "result": "mismatch" if differ else "match",
             "computed": {a: computed.get(a) for a in ALGORITHMS}, "recorded": recorded}
        )  # fmt: skip
    return results
