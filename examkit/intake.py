"""Adding evidence items to a case: recognise the container, record what it says."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import custody
from .case import Case, dumps
from .clock import utc_now
from .errors import UsageError
from .evidence import Container, MediaStream, group_images, open_media
from .integrity import state_digest
from .plugins import Registry

_IMAGE_SUFFIX = re.compile(
    r"(\.(e01|ex01|s01|l01|raw|dd|img|bin|iso|ima|vhdx?|vmdk|qcow2?|\d{3}|[a-z]{2}))+$",
    re.IGNORECASE,
)
_ID_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class EvidenceSet:
    """One evidence item: its container plugin, its files and its id in the case."""

    evidence_id: str
    container: Container
    paths: tuple[Path, ...]
    is_new: bool


def check_evidence_id(value: str) -> str:
    if not _ID_OK.match(value):
        raise UsageError(
            f"evidence id {value!r} is not allowed",
            "use letters, digits, '.', '_' or '-' (up to 64), e.g. E001 or LAPTOP-1",
        )
    return value


def _derive_id(case: Case, first: Path, taken: set[str]) -> str:
    stem = _IMAGE_SUFFIX.sub("", first.name) or first.name
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:56] or "evidence"
    candidate, n = stem, 2
    while candidate in taken or case.evidence(candidate) is not None:
        candidate, n = f"{stem}-{n}", n + 1
    return candidate


def resolve_sets(
    case: Case, registry: Registry, images: Sequence[Path], evidence_id: str | None = None
) -> list[EvidenceSet]:
    """Group image files into evidence sets and give each its id (existing or new)."""
    groups = group_images(images, registry.containers)
    if evidence_id and len(groups) > 1:
        raise UsageError(
            f"--evidence-id names one item but the images form {len(groups)} sets",
            "scan the sets one at a time, or leave out --evidence-id",
        )
    known = {
        tuple(json.loads(r["source_paths"])): r["evidence_id"]
        for r in case.rows("SELECT evidence_id, source_paths FROM evidence")
    }
    out: list[EvidenceSet] = []
    taken: set[str] = set()
    for container, paths in groups:
        key = tuple(str(p) for p in paths)
        existing = known.get(key)
        if evidence_id:
            check_evidence_id(evidence_id)
            row = case.evidence(evidence_id)
            if row is not None and existing != evidence_id:
                raise UsageError(
                    f"evidence id {evidence_id} is already used for other image files",
                    "choose another --evidence-id ('examkit info CASE' lists them)",
                )
            chosen = evidence_id
        else:
            chosen = existing or _derive_id(case, paths[0], taken)
        taken.add(chosen)
        out.append(EvidenceSet(chosen, container, tuple(paths), existing is None))
    return out


def record_evidence(
    case: Case,
    item: EvidenceSet,
    media: MediaStream,
    description: str | None,
    expected: Mapping[str, str],
    actor: str | None,
) -> None:
    """Insert the evidence row and its custody entry."""
    acquisition = dict(media.info.stored_hashes)
    source = "container" if acquisition else None
    if expected:
        acquisition.update(expected)
        source = "container+examiner" if source else "examiner"
    row = {
        "evidence_id": item.evidence_id,
        "description": description,
        "source_paths": dumps([str(p) for p in item.paths]),
        "container": media.info.container,
        "container_metadata": dumps(dict(media.info.metadata)),
        "media_size": media.size,
        "sector_size": media.info.sector_size,
        "acquisition_md5": acquisition.get("md5"),
        "acquisition_sha1": acquisition.get("sha1"),
        "acquisition_sha256": acquisition.get("sha256"),
        "acquisition_source": source,
        "added_utc": utc_now(),
        "added_by": actor,
    }
    with case.transaction() as conn:
        cols = ", ".join(row)
        conn.execute(
            f"INSERT INTO evidence ({cols}) VALUES ({', '.join('?' * len(row))})",
            list(row.values()),
        )
        custody.append(
            conn,
            "evidence_added",
            actor,
            {
                "evidence_id": item.evidence_id,
                "paths": [str(p) for p in item.paths],
                "container": media.info.container,
                "media_size": media.size,
                "acquisition_hashes": acquisition,
                "acquisition_source": source,
                "description": description,
                "state": state_digest(conn),
            },
        )


def add_evidence(
    case: Case,
    registry: Registry,
    images: Sequence[Path],
    evidence_id: str | None = None,
    description: str | None = None,
    expected: Mapping[str, str] | None = None,
    actor: str | None = None,
) -> list[EvidenceSet]:
    """Register evidence items without scanning them; already known sets are left as they are."""
    sets = resolve_sets(case, registry, images, evidence_id)
    if expected and len(sets) > 1:
        raise UsageError("--expect applies to one evidence item", "add the sets one at a time")
    for item in sets:
        if item.is_new and case.evidence(item.evidence_id) is None:
            with open_media(item.container, item.paths) as media:
                record_evidence(case, item, media, description, expected or {}, actor)
    return sets
