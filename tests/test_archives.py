"""Files inside archives: every member a row under its archive, hashed and matched like a file.

``images/archives.raw.gz`` (tests/fixtures/build_archive_image.py) holds ZIP, ZIP64, 7z,
TAR, tar.gz and gzip archives, an encrypted member, a bomb, zips nested beyond the depth
limit and a truncated ZIP; ``images/archives.json`` is the builder's record of each member
(its own hashes of the bytes it put in: the oracle).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from examkit.cli.app import main

FIXTURES = Path(__file__).parent / "fixtures" / "images"
PLAN: dict[str, dict[str, Any]] = json.loads((FIXTURES / "archives.json").read_text())


@pytest.fixture(scope="module")
def scanned(fixture_images: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import os

    work = tmp_path_factory.mktemp("archives")
    known_bad = work / "bad.md5"
    evil = next(p for p, f in PLAN.items() if f.get("known_bad"))
    known_bad.write_text(f"{PLAN[evil]['md5']}  stand-in\n")
    os.environ["EXAMKIT_HASHSETS"] = str(work / "library")
    assert main(["hashset", "import", str(known_bad), "--name", "bad", "--kind",
                 "known-bad"]) == 0  # fmt: skip
    case = work / "case.sqlite"
    assert main(["scan", str(fixture_images / "archives.raw"), "--case", str(case),
                 "--no-verify"]) == 0  # fmt: skip
    conn = sqlite3.connect(case)
    conn.row_factory = sqlite3.Row
    rows = {r["path"]: dict(r) for r in conn.execute("SELECT * FROM files")}
    conn.close()
    return {"case": case, "rows": rows, "evil": evil}


def test_every_member_is_a_row_with_the_builders_hashes(scanned: dict[str, Any]) -> None:
    rows = scanned["rows"]
    for path, facts in PLAN.items():
        if "md5" not in facts:
            continue
        row = rows[path]
        assert row["status"] == "ok", (path, row["error"])
        assert (row["md5"], row["sha256"], row["bytes_read"]) == (
            facts["md5"], facts["sha256"], facts["size"]), path  # fmt: skip
        parent = next(r for r in rows.values() if r["file_id"] == row["parent_file_id"])
        assert path.startswith(parent["path"] + "!/")  # linked to the archive holding it
        assert row["filesystem_id"] is None and row["evidence_id"] == parent["evidence_id"]
    assert rows["/Users/a/pics.zip!/folder/x.jpg"]["mime"] == "image/jpeg"
    assert rows["/Users/a/pics.zip"]["archive_format"] == "zip"
    assert rows["/Users/a/pics.zip!/inner.tar.gz"]["archive_format"] == "tar"
    assert rows["/Users/a/docs.7z"]["archive_format"] == "7z"
    assert rows["/Users/a/readme.txt.gz"]["archive_format"] == "gzip"


def test_the_known_bad_file_two_archives_deep_is_flagged_with_its_container_path(
    scanned: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    evil = scanned["rows"][scanned["evil"]]
    assert evil["flagged"] == 1
    flagged = [p for p, r in scanned["rows"].items() if r["flagged"]]
    assert flagged == [scanned["evil"]]
    assert main(["hits", str(scanned["case"]), "--json"]) == 0
    (hit,) = json.loads(capsys.readouterr().out)
    assert hit["path"] == "/Users/a/pics.zip!/inner.tar.gz!/deep/<withheld>"


def test_problems_are_statuses_not_failures(scanned: dict[str, Any]) -> None:
    rows = scanned["rows"]
    for path, facts in PLAN.items():
        if "archive_status" in facts:
            assert rows[path]["archive_status"] == facts["archive_status"], (path, rows[path])
            assert rows[path]["archive_detail"]
        if facts.get("status") == "encrypted":
            assert rows[path]["status"] == "encrypted" and rows[path]["md5"] is None
    assert "expands" in rows["/Users/a/bomb.zip"]["archive_detail"]
    assert not any(p.startswith("/Users/a/nest.zip!/n1.zip!/n2.zip!/n3.zip!/") for p in rows)
    assert rows["/Users/a/zip64.zip"]["archive_status"] == "ok"


def test_exports_express_the_parent_relation(
    scanned: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import xml.etree.ElementTree as ET

    rows = scanned["rows"]
    member = rows["/Users/a/pics.zip!/notes.txt"]
    archive = rows["/Users/a/pics.zip"]
    xml_out, uco_out = tmp_path / "r.xml", tmp_path / "r.jsonld"
    assert main(["report", str(scanned["case"]), "--format", "dfxml", "-o", str(xml_out)]) == 0
    assert main(["report", str(scanned["case"]), "--format", "case-uco", "-o", str(uco_out)]) == 0
    ns = {"d": "http://www.forensicswiki.org/wiki/Category:Digital_Forensics_XML"}
    tag = f"{{{ns['d']}}}fileobject"
    objects = {fo.findtext("d:id", namespaces=ns): fo for fo in ET.parse(xml_out).iter(tag)}
    parent = objects[str(member["file_id"])].find("d:parent_object/d:id", ns)
    assert parent is not None and parent.text == str(archive["file_id"])
    graph = json.loads(uco_out.read_text())["@graph"]

    def iri_of(path: str) -> str:
        return next(
            n["@id"] for n in graph if n.get("@type") == "uco-observable:File"
            for f in n.get("uco-core:hasFacet", [])
            if f.get("uco-observable:filePath") == path
        )  # fmt: skip

    source, target = iri_of(member["path"]), iri_of(archive["path"])
    assert any(
        n.get("uco-core:kindOfRelationship") == "Contained_Within"
        and n["uco-core:source"]["@id"] == source
        and n["uco-core:target"]["@id"] == target
        for n in graph
    )


def _tar(members: dict[str, bytes], compression: str) -> bytes:
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=f"w:{compression}") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("compression", ["bz2", "xz", "gz"])
def test_compressed_tars_are_tars(compression: str, tmp_path: Path) -> None:
    from examkit.archives import ArchiveLimits, expand, format_for
    from examkit.filetype import detect_mime
    from examkit.plugins import registry

    data = _tar({"a/b.txt": b"hello\n" * 100}, compression)
    path = tmp_path / f"x.tar.{compression}"
    path.write_bytes(data)
    reg = registry()
    fmt = format_for(reg.archive_formats, detect_mime(data[:8192]), data[:8192])
    assert fmt is not None and fmt.name == "tar"
    result = expand(path, path.name, fmt, reg.hashers, [], reg.archive_formats, ArchiveLimits())
    (member,) = result.members
    assert member.path == "a/b.txt" and member.status == "ok"
    assert member.digests["md5"] == __import__("hashlib").md5(b"hello\n" * 100).hexdigest()


def test_member_count_and_total_size_limits(tmp_path: Path) -> None:
    from examkit.archives import ArchiveLimits, expand
    from examkit.plugins import registry

    reg = registry()
    fmt = next(f for f in reg.archive_formats if f.name == "tar")
    path = tmp_path / "many.tar"
    path.write_bytes(_tar({f"f{i}.txt": b"x" * 1000 for i in range(20)}, ""))
    few = expand(path, "many.tar", fmt, reg.hashers, [], [fmt], ArchiveLimits(max_members=5))
    assert few.status == "bomb" and "more than 5 members" in (few.detail or "")
    assert len(few.members) == 5  # what was read before the limit is kept
    small = expand(path, "many.tar", fmt, reg.hashers, [], [fmt],
                   ArchiveLimits(max_total_bytes=4500))  # fmt: skip
    assert small.status == "bomb" and "bytes expanded" in (small.detail or "")
    assert len(small.members) == 4
