"""Hash-set matching end to end: scan a fixture image with a VICS 2.0 known-bad set and an
NSRL-v3-style known-good database built from the image's plan (the hashes the image
builder wrote, not examkit's), then check flags, marks, withheld names and re-matching.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from examkit.cli.app import main
from tests.conftest import FIXTURES
from tests.conftest import dict_rows as rows

PLAN = json.loads((FIXTURES / "plans" / "ntfs.json").read_text())
BY_PATH = {f["path"]: f for f in PLAN["files"]}
KNOWN_BAD = {  # stand-ins for contraband: synthetic pictures of the fixture image
    "pictures/checkerboard.png": {"Category": 1, "Series": "SERIES-ALPHA", "Victim": True},
    "pictures/stripes.jpg": {"Category": "2", "Series": "SERIES-BETA", "Victim": "false"},
    "pictures/vacation/gradient.jpeg": {"Category": 3, "Series": None, "Victim": None},
}
KNOWN_GOOD = ["README.txt", "mismatch/report.pdf", "data/large-1.5MiB.log"]
SECRET_WORDS = ("checkerboard", "stripes", "gradient")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_vics2(path: Path) -> None:
    media = []
    for i, (name, meta) in enumerate(KNOWN_BAD.items(), 1):
        media.append(
            {
                "MediaID": i,
                "Category": meta["Category"],
                "MD5": BY_PATH[name]["md5"].upper(),
                "SHA1": BY_PATH[name]["sha1"],
                "MediaSize": str(BY_PATH[name]["size"]),
                "VictimIdentified": meta["Victim"],
                "Series": meta["Series"],
                "IsDistributed": True,
            }
        )
    doc = {
        "@odata.context": "http://github.com/ICMEC/ProjectVic/DataModels/2.0.xml/US/$metadata#Cases",
        "value": [{"CaseID": "SYNTHETIC-1", "Media": media}],
    }
    path.write_text(json.dumps(doc), "utf-8")


def write_nsrl_v3(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE VERSION (version TEXT, build_set TEXT, build_date TEXT,"
        " release_date TEXT, description TEXT);"
        "CREATE TABLE MFG (manufacturer_id INTEGER, name TEXT);"
        "CREATE TABLE OS (operating_system_id INTEGER, name TEXT, version TEXT,"
        " manufacturer_id INTEGER);"
        "CREATE TABLE PKG (package_id INTEGER, name TEXT, version TEXT,"
        " operating_system_id INTEGER, manufacturer_id INTEGER, language TEXT,"
        " application_type TEXT);"
        "CREATE TABLE FILE (sha256 VARCHAR, sha1 VARCHAR, md5 VARCHAR, crc32 VARCHAR,"
        " file_name VARCHAR, file_size INTEGER, package_id INTEGER);"
    )
    conn.execute(
        "INSERT INTO VERSION VALUES"
        " ('2099.01.1', 'Modern', '2099-01-01', '2099-01-02', 'synthetic')"
    )
    for name in KNOWN_GOOD:
        f = BY_PATH[name]
        conn.execute(
            "INSERT INTO FILE VALUES (?, ?, ?, '00000000', ?, ?, 1)",
            (f["sha256"].upper(), f["sha1"].upper(), f["md5"].upper(), name.rsplit("/")[-1],
             f["size"]),
        )  # fmt: skip
    conn.commit()
    conn.close()


@pytest.fixture
def sets(tmp_path: Path) -> tuple[Path, Path]:
    bad, good = tmp_path / "vics2.json", tmp_path / "rds.db"
    write_vics2(bad)
    write_nsrl_v3(good)
    return bad, good


def import_sets(capsys: pytest.CaptureFixture[str], sets: tuple[Path, Path]) -> None:
    bad, good = sets
    code, out, err = run(capsys, "hashset", "import", str(bad), "--name", "vics-test",
                         "--kind", "known-bad")  # fmt: skip
    assert code == 0, err
    assert "3 entries" in out and "format vics" in out
    code, out, err = run(capsys, "hashset", "import", str(good), "--name", "rds-test",
                         "--kind", "known-good")  # fmt: skip
    assert code == 0, err
    assert "format nsrl-v3" in out


def flagged_paths(case: Path) -> set[str]:
    return {r["path"] for r in rows(case, "SELECT path FROM files WHERE flagged = 1")}


def test_scan_flags_exactly_the_known_bad_files(
    capsys: pytest.CaptureFixture[str], fixture_images: Path, tmp_path: Path, sets: Any
) -> None:
    import_sets(capsys, sets)
    case = tmp_path / "case.sqlite"
    code, out, err = run(capsys, "scan", str(fixture_images / "ntfs.raw"), "--case", str(case),
                         "--workers", "1", "--examiner", "pytest")  # fmt: skip
    assert code == 0, err
    for word in SECRET_WORDS:
        assert word not in out and word not in err
    assert flagged_paths(case) == {"/" + p for p in KNOWN_BAD}
    good = {r["path"] for r in rows(case, "SELECT path FROM files WHERE known_good = 1")}
    assert good == {"/" + p for p in KNOWN_GOOD}

    matches = rows(
        case,
        "SELECT f.path, m.* FROM matches m JOIN files f USING (file_id) WHERE m.kind = 'known_bad'",
    )
    by_path: dict[str, dict[str, Any]] = {}
    for m in matches:
        by_path.setdefault(m["path"], {}).setdefault("algorithms", set()).add(m["algorithm"])
        by_path[m["path"]].update(m)
    for name, meta in KNOWN_BAD.items():
        m = by_path["/" + name]
        assert m["algorithms"] == {"md5", "sha1"}  # the set carries both; both matched
        assert m["category"] == int(meta["Category"])
        assert m["category_label"] == f"Category {int(meta['Category'])}"
        assert m["series"] == meta["Series"]
        assert m["victim_identified"] == {True: 1, "false": 0, None: None}[meta["Victim"]]
        assert m["is_distributed"] == 1 and m["size_matches"] == 1 and m["alert"] == 1

    used = rows(case, "SELECT name, kind, format, version FROM hashsets ORDER BY name")
    assert used == [
        {"name": "rds-test", "kind": "known_good", "format": "nsrl-v3", "version": "2099.01.1"},
        {"name": "vics-test", "kind": "known_bad", "format": "vics", "version": "2.0"},
    ]
    actions = [r["action"] for r in rows(case, "SELECT action FROM custody_log")]
    assert actions.count("hashset_used") == 2

    # listings withhold flagged names in every form, and leave known-good files out
    for args in ([], ["--json"], ["--csv"]):
        code, out, _ = run(capsys, "files", str(case), *args)
        assert code == 0
        for word in SECRET_WORDS:
            assert word not in out
        assert "README.txt" not in out
    code, out, _ = run(capsys, "files", str(case), "--include-known", "--json")
    listed = json.loads(out)
    assert "/README.txt" in {r["path"] for r in listed}
    assert sum(1 for r in listed if r["flagged"]) == 3
    assert {r["path"] for r in listed if r["flagged"]} == {
        "/pictures/<withheld>", "/pictures/vacation/<withheld>"
    }  # fmt: skip

    # hits: names withheld; with --show-names shown and the request logged
    code, out, _ = run(capsys, "hits", str(case), "--json")
    hits = json.loads(out)
    assert len(hits) == 3 and all(h["name"] == "<withheld>" for h in hits)
    assert {h["series"] for h in hits} == {"SERIES-ALPHA", "SERIES-BETA", None}
    code, out, _ = run(capsys, "hits", str(case))
    assert code == 0 and "withheld" in out
    for word in SECRET_WORDS:
        assert word not in out
    assert not rows(case, "SELECT * FROM custody_log WHERE action = 'names_revealed'")
    code, out, _ = run(capsys, "hits", str(case), "--show-names", "--examiner", "Ex. Aminer",
                       "--json")  # fmt: skip
    assert {h["path"] for h in json.loads(out)} == {"/" + p for p in KNOWN_BAD}
    (reveal,) = rows(case, "SELECT * FROM custody_log WHERE action = 'names_revealed'")
    assert reveal["actor"] == "Ex. Aminer"
    assert json.loads(reveal["details"])["files"] == 3


def test_match_finds_the_same_hits_later_without_reading_evidence(
    capsys: pytest.CaptureFixture[str], fixture_images: Path, tmp_path: Path, sets: Any
) -> None:
    case = tmp_path / "case.sqlite"
    image = tmp_path / "ntfs.raw"
    image.symlink_to(fixture_images / "ntfs.raw")
    code, _, err = run(capsys, "scan", str(image), "--case", str(case), "--workers", "1")
    assert code == 0, err
    assert flagged_paths(case) == set()
    import_sets(capsys, sets)
    image.unlink()  # re-matching needs the case only
    code, out, err = run(capsys, "match", str(case), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["flagged"], summary["known_good"]) == (3, 3)
    assert flagged_paths(case) == {"/" + p for p in KNOWN_BAD}
    count = rows(case, "SELECT count(*) AS n FROM matches")[0]["n"]
    code, out, _ = run(capsys, "match", str(case), "--json")
    assert json.loads(out)["matches"] == 0  # idempotent: nothing recorded twice
    assert rows(case, "SELECT count(*) AS n FROM matches")[0]["n"] == count
    runs = rows(case, "SELECT command, status FROM runs ORDER BY run_id")
    assert runs == [{"command": c, "status": "complete"} for c in ("scan", "match", "match")]


def test_category_profile_decides_what_alerts(
    capsys: pytest.CaptureFixture[str], fixture_images: Path, tmp_path: Path, sets: Any
) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({
        "name": "test-lab",
        "categories": {"1": {"label": "Class one", "alert": True},
                       "2": {"label": "Not pertinent", "alert": False}},
    }))  # fmt: skip
    bad, _ = sets
    code, _, err = run(capsys, "hashset", "import", str(bad), "--name", "v", "--kind",
                       "known-bad", "--category-profile", str(profile))  # fmt: skip
    assert code == 0, err
    case = tmp_path / "case.sqlite"
    code, _, err = run(capsys, "scan", str(fixture_images / "ntfs.raw"), "--case", str(case),
                       "--workers", "1")  # fmt: skip
    assert code == 0, err
    assert flagged_paths(case) == {"/pictures/checkerboard.png", "/pictures/vacation/gradient.jpeg"}
    code, out, _ = run(capsys, "hits", str(case), "--all-categories", "--json")
    labels = {h["file_id"]: (h["category_label"], h["alert"]) for h in json.loads(out)}
    assert sorted(labels.values()) == [("Category 3", 1), ("Class one", 1), ("Not pertinent", 0)]


def test_lookup_cli_withholds_known_bad_names(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = tmp_path / "bad.md5"
    md5 = BY_PATH["pictures/stripes.jpg"]["md5"]
    source.write_text(f"{md5}  /stand-in/stripes.jpg\n")
    assert run(capsys, "hashset", "import", str(source), "-n", "b", "-k", "known-bad")[0] == 0
    code, out, err = run(capsys, "hashset", "lookup", "b", md5, "0" * 32)
    assert code == 0 and out.split("\t")[:3] == [md5, "md5", "<withheld>"]
    assert "1 of 2 given hashes" in err
    code, out, _ = run(capsys, "hashset", "lookup", "b", md5, "--show-names")
    assert "/stand-in/stripes.jpg" in out
    assert run(capsys, "hashset", "lookup", "b", "0" * 32)[0] == 1
    code, _, err = run(capsys, "hashset", "lookup", "nope", md5)
    assert code == 2 and err.startswith("examkit: error: no hash set named")


def test_lean_lookup_path_prints_what_the_full_cli_prints(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from examkit.cli import entry, lookup_lean

    source = tmp_path / "good.md5"
    values = [BY_PATH[p]["md5"] for p in KNOWN_GOOD]
    source.write_text("".join(f"{v}  /x/{i}\n" for i, v in enumerate(values)))
    assert run(capsys, "hashset", "import", str(source), "-n", "g", "-k", "known-good")[0] == 0
    queries = tmp_path / "q.txt"
    queries.write_text("\n".join([*values, "f" * 40, "not-hex"]) + "\n")
    for args in (["-f", str(queries)], ["-f", str(queries), "--json"], [values[1]]):
        full = run(capsys, "hashset", "lookup", "g", *args)
        assert lookup_lean.fast_lookup(["hashset", "lookup", "g", *args]) is not None
        capsys.readouterr()
        lean_code = entry.main(["hashset", "lookup", "g", *args])
        lean = capsys.readouterr()
        assert (lean_code, lean.out, lean.err) == full
    assert lookup_lean.fast_lookup(["hashset", "lookup", "g", "--help"]) is None
    code = entry.main(["hashset", "lookup", "g", "--help"])
    assert code == 0 and "--show-names" in capsys.readouterr().out


def test_resumed_scan_matches_what_the_interrupted_run_hashed(
    capsys: pytest.CaptureFixture[str], fixture_images: Path, tmp_path: Path, sets: Any
) -> None:
    from examkit.scan import ScanInterrupted, ScanOptions, scan
    from tests.test_resume import StopAfter

    import_sets(capsys, sets)
    case = tmp_path / "case.sqlite"
    image = fixture_images / "ntfs.raw"
    options = ScanOptions(workers=0, unit_files=4, hashsets=())  # first run: no sets
    with pytest.raises(ScanInterrupted):
        scan(case, [image], options=options, progress=StopAfter(hashed=15))
    first = {r["path"] for r in rows(case, "SELECT path FROM files WHERE status = 'ok'")}
    assert first & {"/" + p for p in [*KNOWN_BAD, *KNOWN_GOOD]}  # some hashed before the stop
    assert not rows(case, "SELECT * FROM matches")
    options.resume, options.hashsets = True, None  # the resumed run uses every set
    scan(case, [image], options=options)
    assert flagged_paths(case) == {"/" + p for p in KNOWN_BAD}
    good = {r["path"] for r in rows(case, "SELECT path FROM files WHERE known_good = 1")}
    assert good == {"/" + p for p in KNOWN_GOOD}


def test_a_schema_1_case_is_migrated_to_hold_matches(tmp_path: Path) -> None:
    from examkit.case import Case, _statements
    from examkit.schema import MIGRATIONS, SCHEMA_VERSION

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    for statement in _statements(MIGRATIONS[1]):
        conn.execute(statement)
    conn.execute(
        "INSERT INTO case_info VALUES (1, 'OLD-1', NULL, NULL, NULL, '2026-01-01T00:00:00Z', 1,"
        " '0.1.0')"
    )
    conn.execute("INSERT INTO schema_migrations VALUES (1, '2026-01-01T00:00:00Z', '0.1.0')")
    conn.commit()
    conn.close()
    with Case.open(path) as case:
        assert case.schema_version() == SCHEMA_VERSION
        columns = {r[1] for r in case.conn.execute("PRAGMA table_info(files)")}
        assert {"flagged", "known_good"} <= columns
        versions = [r[0] for r in case.conn.execute("SELECT version FROM schema_migrations")]
        assert versions == list(range(1, SCHEMA_VERSION + 1))
        assert case.conn.execute("SELECT count(*) FROM matches").fetchone() == (0,)


@pytest.mark.parametrize("kind", ["known-good", "known-bad"])
def test_vectorised_lookup_output_equals_the_per_line_output(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kind: str
) -> None:
    """The one-pass TSV (names of many lengths, and none) is byte for byte
    what the per-line printer, which sends each name through the display gate, writes."""
    from examkit import fastlookup
    from examkit.cli import lookup_output

    monkeypatch.setattr(
        fastlookup, "helper", lambda: None
    )  # the numpy path (the compiled one: test_hashset_native.py)
    md5s = [hashlib.md5(b"%d" % i).hexdigest() for i in range(50)]
    source = tmp_path / "set.md5"
    source.write_text("".join(f"{m}  {'/x' * (i % 9)}{i}\n" for i, m in enumerate(md5s)))
    code, _, err = run(capsys, "hashset", "import", str(source), "-n", "s", "-k", kind)
    assert code == 0, err
    queries = tmp_path / "q.txt"
    queries.write_text("\n".join(md5s[::3] + [h.upper() for h in md5s[1::3]] + ["0" * 64]) + "\n")
    vectorised = run(capsys, "hashset", "lookup", "s", "-f", str(queries))
    monkeypatch.setattr(lookup_output, "_tsv", lambda *args: None)
    per_line = run(capsys, "hashset", "lookup", "s", "-f", str(queries))
    assert vectorised == per_line and vectorised[1].count("\n") == 34


def test_exact_matching_without_the_compiled_helper_records_the_same_matches(
    capsys: pytest.CaptureFixture[str],
    fixture_images: Path,
    tmp_path: Path,
    sets: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The matcher's two searches (the compiled helper, numpy where it was not built) record
    the same rows, in the same order; a scan's parent that matches exact digests only
    (``--no-perceptual``) never imports numpy when the helper is there."""
    import subprocess
    import sys

    from examkit import hashdb, matching, native

    import_sets(capsys, sets)
    columns = ("file_id, hashset_id, kind, algorithm, digest, entry, alert, category,"
               " entry_name, entry_size, size_matches, metadata")  # fmt: skip
    recorded = []
    for helper in ("built", "absent"):
        if helper == "absent":
            monkeypatch.setattr(hashdb, "helper", lambda: None)
            monkeypatch.setattr(matching, "helper", lambda: None)
        case = tmp_path / f"{helper}.sqlite"
        code, _, err = run(capsys, "scan", str(fixture_images / "ntfs.raw"), "--case", str(case),
                           "--workers", "0", "--no-verify")  # fmt: skip
        assert code == 0, err
        recorded.append(rows(case, f"SELECT {columns} FROM matches ORDER BY match_id"))
    assert recorded[0] == recorded[1]
    assert {r["kind"] for r in recorded[0]} == {"known_bad", "known_good"}
    if native.helper() is None:
        return
    probe = (
        "import sys; from examkit.cli.entry import main; code = main(sys.argv[1:]);"
        " sys.stderr.write('numpy imported: %s' % ('numpy' in sys.modules)); sys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, "scan", str(fixture_images / "ntfs.raw"), "--case",
         str(tmp_path / "lean.sqlite"), "--no-verify", "--no-perceptual", "--workers", "1"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "numpy imported: False" in done.stderr
    lean = rows(tmp_path / "lean.sqlite", "SELECT count(*) AS n FROM matches")[0]["n"]
    assert lean == len(recorded[0])
