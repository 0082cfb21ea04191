"""The VICS 2.0 export: valid JSON, read back whole by examkit's own VICS loader,
known-good content left out, known-bad content categorised from its set, and
names of flagged files withheld unless the examiner asked.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from examkit.cli.app import main
from tests.conftest import FIXTURES

PLAN = {f["path"]: f for f in json.loads((FIXTURES / "plans" / "ntfs.json").read_text())["files"]}
BAD = "pictures/stripes.jpg"  # a stand-in for contraband
GOOD = ["README.txt", "docs/notes.md"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rows(case: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(case)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture
def case(capsys: pytest.CaptureFixture[str], fixture_images: Path, tmp_path: Path) -> Path:
    """ntfs.raw scanned with a VICS known-bad set (one file) and a known-good md5sum set."""
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "@odata.context": "http://github.com/ICMEC/ProjectVic/DataModels/2.0.xml/US/"
                "$metadata#Cases",
                "value": [
                    {
                        "CaseID": "OTHER-AGENCY",
                        "Media": [
                            {
                                "MediaID": 77,
                                "Category": 2,
                                "MD5": PLAN[BAD]["md5"].upper(),
                                "SHA1": PLAN[BAD]["sha1"],
                                "MediaSize": PLAN[BAD]["size"],
                                "Series": "SERIES-X",
                                "VictimIdentified": True,
                            }
                        ],
                    }
                ],
            }
        )
    )
    good = tmp_path / "good.md5"
    good.write_text("".join(f"{PLAN[p]['md5']}  {p}\n" for p in GOOD))
    for source, name, kind in ((bad, "bad", "known-bad"), (good, "good", "known-good")):
        code, _, err = run(capsys, "hashset", "import", str(source), "-n", name, "-k", kind)
        assert code == 0, err
    path = tmp_path / "case.sqlite"
    code, _, err = run(capsys, "scan", str(fixture_images / "ntfs.raw"), "--case", str(path),
                       "--workers", "1")  # fmt: skip
    assert code == 0, err
    assert rows(path, "SELECT count(*) FROM files WHERE flagged = 1") == [(1,)]
    assert rows(path, "SELECT count(*) FROM files WHERE known_good = 1")[0][0] >= len(GOOD)
    return path


def export(capsys: pytest.CaptureFixture[str], case: Path, out: Path, *extra: str) -> Any:
    code, _, err = run(capsys, "report", str(case), "--format", "vics", "-o", str(out), *extra)
    assert code == 0, err
    return json.loads(out.read_text("utf-8"))  # valid JSON, UTF-8


def test_vics_export_round_trips_through_hashset_import(
    capsys: pytest.CaptureFixture[str], case: Path, tmp_path: Path
) -> None:
    out = tmp_path / "export.json"
    doc = export(capsys, case, out)
    assert doc["@odata.context"].endswith("/DataModels/2.0.xml/US/$metadata#Cases")
    (only,) = doc["value"]
    assert only["CaseID"] == "case"  # the case number (default: the case file's name)
    media = only["Media"]

    expected = {
        r[0]
        for r in rows(
            case,
            "SELECT md5 FROM files WHERE status = 'ok' AND md5 IS NOT NULL AND known_good = 0",
        )
    }
    assert len(media) == len(expected) > 20
    assert {m["MD5"].lower() for m in media} == expected
    assert all(m["MD5"] == m["MD5"].upper() and len(m["MD5"]) == 32 for m in media)
    assert [m["MediaID"] for m in media] == list(range(1, len(media) + 1))
    occurrences = rows(
        case,
        "SELECT count(*) FROM files WHERE status = 'ok' AND md5 IS NOT NULL AND known_good = 0",
    )[0][0]
    assert sum(len(m["MediaFiles"]) for m in media) == occurrences
    for path in GOOD:  # known-good content is left out
        assert PLAN[path]["md5"] not in expected

    by_md5 = {m["MD5"].lower(): m for m in media}
    hit = by_md5[PLAN[BAD]["md5"]]
    assert (hit["Category"], hit["Series"], hit["VictimIdentified"]) == (2, "SERIES-X", True)
    assert hit["IsPrecategorized"] is True and hit["MediaSize"] == PLAN[BAD]["size"]
    assert hit["SHA1"] == PLAN[BAD]["sha1"].upper()
    other = by_md5[PLAN["pictures/circles.png"]["md5"]]
    assert other["Category"] is None and other["IsPrecategorized"] is False

    # examkit's own loader detects the export as VICS and reads every Media
    code, stdout, err = run(capsys, "hashset", "import", str(out), "--name", "export", "--kind",
                            "known-bad", "--json")  # fmt: skip
    assert code == 0, err
    imported = json.loads(stdout)
    assert imported["format"] == "vics" and imported["malformed"] == 0
    assert imported["entries"] == len(media)
    assert imported["provenance"]["vics_version"] == "2.0"

    hashes = tmp_path / "md5s.txt"
    hashes.write_text("".join(f"{m}\n" for m in sorted(expected)))
    code, stdout, _ = run(capsys, "hashset", "lookup", "export", "--file", str(hashes),
                          "--show-names", "--json")  # fmt: skip
    assert code == 0
    found = {f["hash"]: f for f in json.loads(stdout)["found"] if f["algorithm"] == "md5"}
    assert set(found) == expected
    back = found[PLAN[BAD]["md5"]]
    assert back["meta"]["category"] == 2 and back["meta"]["series"] == "SERIES-X"
    assert back["meta"]["media_id"] == hit["MediaID"] and back["name"] == "<withheld>"
    assert found[PLAN["pictures/circles.png"]["md5"]]["name"] == "circles.png"


def test_vics_export_withholds_flagged_names(
    capsys: pytest.CaptureFixture[str], case: Path, tmp_path: Path
) -> None:
    out = tmp_path / "export.json"
    doc = export(capsys, case, out)
    text = out.read_text("utf-8")
    assert "stripes" not in text
    hit = next(m for m in doc["value"][0]["Media"] if m["MD5"].lower() == PLAN[BAD]["md5"])
    assert hit["MediaFiles"] == [
        {
            "FileName": "<withheld>",
            "FilePath": "ntfs/pictures/<withheld>",
            **{k: v for k, v in hit["MediaFiles"][0].items() if k not in ("FileName", "FilePath")},
        }
    ]
    assert "circles.png" in text
    assert not rows(case, "SELECT 1 FROM custody_log WHERE action = 'names_revealed'")

    shown = export(capsys, case, tmp_path / "shown.json", "--show-names")
    hit = next(m for m in shown["value"][0]["Media"] if m["MD5"].lower() == PLAN[BAD]["md5"])
    assert [(f["FileName"], f["FilePath"]) for f in hit["MediaFiles"]] == [
        ("stripes.jpg", "ntfs/pictures/stripes.jpg")
    ]
    assert len(rows(case, "SELECT 1 FROM custody_log WHERE action = 'names_revealed'")) == 1


def test_vics_export_of_a_case_without_hashed_files_is_valid(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "empty.sqlite"
    code, _, err = run(capsys, "case", "init", str(path), "--case-number", "EMPTY-1")
    assert code == 0, err
    doc = export(capsys, path, tmp_path / "empty.json")
    assert doc["value"] == [
        {"CaseID": "EMPTY-1", "CaseNumber": "EMPTY-1", "SourceApplicationName": "examkit",
         "SourceApplicationVersion": doc["value"][0]["SourceApplicationVersion"], "Media": []}
    ]  # fmt: skip
