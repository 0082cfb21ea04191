"""The ``case-uco`` report: CASE/UCO JSON-LD that ``case_validate`` (case-utils) accepts."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from examkit.cli.app import main
from tests.conftest import FIXTURES

PLAN = {f["path"]: f for f in json.loads((FIXTURES / "plans" / "fat16.json").read_text())["files"]}
BAD = "pictures/stripes.jpg"  # its md5 goes into a known-bad set: the file is flagged
CASE_VALIDATE = Path(sys.executable).with_name("case_validate")

FILE = "uco-observable:File"
CONTENT = "uco-observable:ContentDataFacet"
FILE_FACET = "uco-observable:FileFacet"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, fixture_images: Path) -> Iterator[Path]:
    """A scanned fat16 case with one flagged file, and its case-uco report."""
    folder = tmp_path_factory.mktemp("caseuco")
    monkey = pytest.MonkeyPatch()
    monkey.setenv("EXAMKIT_HASHSETS", str(folder / "library"))
    monkey.delenv("EXAMKIT_SIGNING_KEY", raising=False)
    monkey.delenv("EXAMKIT_EXAMINER", raising=False)
    try:
        bad = folder / "bad.md5"
        bad.write_text(f"{PLAN[BAD]['md5']}  /stand-in/name\n")
        assert main(["hashset", "import", str(bad), "--name", "b", "--kind", "known-bad"]) == 0
        case = folder / "case.sqlite"
        assert main(["case", "init", str(case), "--case-number", "2026-0042",
                     "--title", "Test matter", "--agency", "Test Agency"]) == 0  # fmt: skip
        code = main(["scan", str(fixture_images / "fat16.raw"), "--case", str(case),
                     "--workers", "1", "--examiner", "Ex. Aminer"])  # fmt: skip
        assert code == 0
        out = folder / "case.jsonld"
        assert main(["report", str(case), "--format", "case-uco", "-o", str(out)]) == 0
        yield out
    finally:
        monkey.undo()


def graph(path: Path) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["@graph"]
    return nodes


def facets(node: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [f for f in node.get("uco-core:hasFacet", []) if f["@type"] == kind]


def hash_values(node: dict[str, Any]) -> set[str]:
    (content,) = facets(node, CONTENT)
    return {h["uco-types:hashValue"]["@value"] for h in content["uco-observable:hash"]}


def test_case_validate_says_the_report_conforms(report: Path) -> None:
    if not CASE_VALIDATE.exists():
        pytest.skip(
            f"case_validate not installed next to {sys.executable} (pip install case-utils)"
        )
    started = time.monotonic()
    proc = subprocess.run(
        [str(CASE_VALIDATE), str(report)], capture_output=True, text=True, timeout=600
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    assert "Conforms: True" in proc.stdout
    assert "NonExistentCDOConceptWarning" not in proc.stderr, proc.stderr[-2000:]
    print(f"case_validate: {took:.1f}s")


def test_every_hashed_file_has_its_hashes(report: Path) -> None:
    nodes = graph(report)
    evidence_objects = {
        ref["@id"]
        for node in nodes
        if node["@type"] == "case-investigation:ProvenanceRecord"
        for ref in node["uco-core:object"]
    }
    files = [n for n in nodes if n["@type"] == FILE and n["@id"] not in evidence_objects]
    hashed = [n for n in files if facets(n, CONTENT)]
    conn = sqlite3.connect(report.parent / "case.sqlite")
    try:
        (rows,) = conn.execute("SELECT count(*) FROM files").fetchone()
        (with_hashes,) = conn.execute(
            "SELECT count(*) FROM files WHERE md5 IS NOT NULL AND sha1 IS NOT NULL"
            " AND sha256 IS NOT NULL"
        ).fetchone()
    finally:
        conn.close()
    assert len(files) == rows
    assert len(hashed) == with_hashes > 0
    for node in hashed:
        (content,) = facets(node, CONTENT)
        methods = [h["uco-types:hashMethod"] for h in content["uco-observable:hash"]]
        assert methods == ["MD5", "SHA1", "SHA256"]
        assert all(h["uco-types:hashValue"]["@type"] == "xsd:hexBinary"
                   for h in content["uco-observable:hash"])  # fmt: skip
    readme = PLAN["README.txt"]
    (node,) = [n for n in files if facets(n, FILE_FACET)[0]["uco-observable:filePath"]
               == "/README.txt"]  # fmt: skip
    assert hash_values(node) == {readme["md5"], readme["sha1"], readme["sha256"]}


def test_a_flagged_file_keeps_its_hashes_but_not_its_name(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert "stripes" not in text
    flagged = [n for n in graph(report) if "flagged" in n.get("uco-core:tag", [])]
    assert len(flagged) == 1
    (file_facet,) = facets(flagged[0], FILE_FACET)
    assert file_facet["uco-observable:fileName"] == "<withheld>"
    assert file_facet["uco-observable:filePath"] == "/pictures/<withheld>"
    assert hash_values(flagged[0]) == {PLAN[BAD]["md5"], PLAN[BAD]["sha1"], PLAN[BAD]["sha256"]}


def test_investigation_action_and_provenance(report: Path) -> None:
    nodes = graph(report)
    by_id = {n["@id"]: n for n in nodes}
    (inv,) = [n for n in nodes if n["@type"] == "case-investigation:Investigation"]
    assert inv["uco-core:name"] == "2026-0042"
    assert inv["uco-core:description"] == "Test matter"
    orgs = [n for n in nodes if n["@type"] == "uco-identity:Organization"]
    assert [o["uco-core:name"] for o in orgs] == ["Test Agency"]
    (action,) = [n for n in nodes if n["@type"] == "case-investigation:InvestigativeAction"]
    assert action["uco-action:startTime"]["@type"] == "xsd:dateTime"
    assert action["uco-action:endTime"]["@type"] == "xsd:dateTime"
    assert by_id[action["uco-action:performer"]["@id"]]["uco-core:name"] == "Ex. Aminer"
    tools = {by_id[t["@id"]]["uco-core:name"]: by_id[t["@id"]]["uco-tool:version"]
             for t in action["uco-action:instrument"]}  # fmt: skip
    assert "examkit" in tools and "The Sleuth Kit" in tools
    (image,) = [n for n in nodes if n["@type"] == "uco-observable:Image"]
    assert action["uco-action:object"] == [{"@id": image["@id"]}]
    results = {r["@id"] for r in action["uco-action:result"]}
    assert all(by_id[r]["@type"] == FILE for r in results) and len(results) > 40
    (record,) = [n for n in nodes if n["@type"] == "case-investigation:ProvenanceRecord"]
    assert record["case-investigation:exhibitNumber"] == "fat16"
    objects = [by_id[o["@id"]] for o in record["uco-core:object"]]
    (image_file,) = [o for o in objects if o["@type"] == FILE]
    assert facets(image_file, FILE_FACET)[0]["uco-observable:fileName"] == "fat16.raw"
    assert len(hash_values(image)) == 3  # media md5, sha1, sha256
    assert hash_values(image_file) == hash_values(image)  # a raw image file is the media


def test_the_report_is_deterministic(report: Path) -> None:
    again = report.with_name("again.jsonld")
    assert main(["report", str(report.parent / "case.sqlite"), "--format", "case-uco",
                 "-o", str(again)]) == 0  # fmt: skip
    assert again.read_bytes() == report.read_bytes()
