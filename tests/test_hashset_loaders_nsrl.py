"""NSRL loaders (RDS v3 SQLite, RDS 2.x / 1.5 NSRLFile.txt) against synthetic fixtures.

The fixtures and their ``.expected.json`` come from
``tests/fixtures/hashsets/make_nsrl_sets.py`` (digests of b"examkit-nsrl-<n>").
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from examkit.hashformat import (
    DIGESTS,
    HEAD_BYTES,
    HashSetError,
    HashSetFormat,
    MalformedInput,
)
from examkit_plugins.hashsets import nsrl
from examkit_plugins.hashsets.nsrl import NsrlV3Format
from examkit_plugins.hashsets.nsrl_rds2 import NsrlRds2Format

HERE = Path(__file__).resolve().parent / "fixtures" / "hashsets"
V3 = NsrlV3Format()
RDS2 = NsrlRds2Format()
HEX = set("0123456789abcdef")


class CollectingSink:
    """An EntrySink that keeps everything in lists, normalising hex to lower case."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.entries: list[dict[str, Any]] = []
        self.bad: list[tuple[int | None, str, str | bytes | None]] = []
        self.facts: dict[str, Any] = {}

    def add(
        self,
        *,
        md5: str | bytes | None = None,
        sha1: str | bytes | None = None,
        sha256: str | bytes | None = None,
        name: str | bytes | None = None,
        size: int | None = None,
        meta: Mapping[str, Any] | None = None,
        line: int | None = None,
    ) -> bool:
        digests: dict[str, str | None] = {}
        for algo, value in (("md5", md5), ("sha1", sha1), ("sha256", sha256)):
            if isinstance(value, bytes):
                text = value.hex() if len(value) == DIGESTS[algo] else "?"
            else:
                text = (value or "").strip().lower()
            if not text:
                digests[algo] = None
                continue
            if len(text) != 2 * DIGESTS[algo] or not set(text) <= HEX:
                self.malformed(line, f"bad {algo} digest", repr(value))
                return False
            digests[algo] = text
        if not any(digests.values()):
            self.malformed(line, "no digest", None)
            return False
        self.entries.append(
            {"line": line, **digests, "name": name, "size": size, "meta": dict(meta or {})}
        )
        return True

    def add_columns(
        self,
        digests: Mapping[str, np.ndarray],
        names_blob: bytes | None = None,
        name_spans: np.ndarray | None = None,
        sizes: np.ndarray | None = None,
    ) -> None:
        raise AssertionError("the NSRL loaders add entries one by one")

    def malformed(self, line: int | None, reason: str, text: str | bytes | None = None) -> None:
        self.bad.append((line, reason, text))
        if self.strict:
            raise MalformedInput(f"line {line}: {reason}", "fix the line or drop --strict")

    def provenance(self, **values: Any) -> None:
        self.facts.update(values)


def load(fmt: HashSetFormat, path: Path, strict: bool = False) -> CollectingSink:
    sink = CollectingSink(strict)
    fmt.read(path, sink)
    return sink


def expected(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((HERE / f"{name}.expected.json").read_text("ascii"))
    return data


def canon(entries: list[dict[str, Any]], with_line: bool) -> list[str]:
    out = []
    for entry in entries:
        e = dict(entry)
        if not with_line:
            e.pop("line", None)
        out.append(json.dumps(e, sort_keys=True))
    return sorted(out)


def head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(HEAD_BYTES)


def make_db(path: Path, script: str, rows: list[tuple[Any, ...]] | None = None) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(script)
    if rows:
        marks = ", ".join("?" * len(rows[0]))
        conn.executemany(f"INSERT INTO FILE VALUES ({marks})", rows)
    conn.commit()
    conn.close()
    return path


RDS_V3_SCHEMA = """
    CREATE TABLE FILE (sha256 VARCHAR, sha1 VARCHAR, md5 VARCHAR, crc32 VARCHAR,
        file_name VARCHAR, file_size INTEGER, package_id INTEGER);
    CREATE TABLE PKG (package_id INTEGER, name VARCHAR);
    CREATE TABLE OS (operating_system_id INTEGER, name VARCHAR);
    CREATE TABLE MFG (manufacturer_id INTEGER, name VARCHAR);
    CREATE TABLE VERSION (version VARCHAR, build_set VARCHAR, build_date TIMESTAMP,
        release_date TIMESTAMP, description VARCHAR);
"""
SHA256_A = "AA" * 32
SHA1_A = "BB" * 20
MD5_A = "CC" * 16


# --------------------------------------------------------------------------- RDS v3


@pytest.mark.parametrize("fixture", ["nsrl-v3-mini.db", "nsrl-v3-renamed.db"])
def test_v3_loads_exactly_the_expected_entries(fixture: str) -> None:
    truth = expected(fixture)
    sink = load(V3, HERE / fixture)
    assert sink.bad == []
    assert sink.facts == truth["provenance"]
    assert canon(sink.entries, with_line=False) == canon(truth["entries"], with_line=False)
    assert len(sink.entries) == len(truth["entries"])


def test_v3_mini_has_duplicate_sha1_in_two_packages() -> None:
    sink = load(V3, HERE / "nsrl-v3-mini.db")
    by_sha1: dict[str, set[int]] = {}
    for e in sink.entries:
        by_sha1.setdefault(e["sha1"], set()).add(e["meta"]["package_id"])
    assert any(len(p) == 2 for p in by_sha1.values())
    assert {e["name"] for e in sink.entries} >= {
        "café.txt",
        "bell\x07name.dll",
        "report, final.doc",
    }


def test_v3_introspection_on_renamed_objects() -> None:
    conn = nsrl._connect(HERE / "nsrl-v3-renamed.db")
    try:
        schema = nsrl._inspect(conn)
    finally:
        conn.close()
    assert schema.files is not None
    assert schema.files.name == "File" and schema.files.kind == "view"  # not distinct_hash
    assert schema.files.roles == {
        "sha256": "SHA_256",
        "sha1": "Sha1",
        "md5": "MD5",
        "crc32": "CRC",
        "name": "FileName",
        "size": "FileSize",
        "package_id": "PackageId",
    }
    assert schema.version is not None and schema.version.name == "version"
    assert schema.is_nsrl


def test_v3_full_rds_layout_file_view_over_metadata(tmp_path: Path) -> None:
    """The full RDS: FILE is a view over a wider METADATA table; DISTINCT_HASH has no names."""
    db = make_db(
        tmp_path / "full.db",
        f"""
        CREATE TABLE METADATA (object_id INTEGER, package_id INTEGER, file_name VARCHAR,
            file_size INTEGER, crc32 VARCHAR, md5 VARCHAR, sha1 VARCHAR, sha256 VARCHAR,
            extension VARCHAR, bitness VARCHAR);
        CREATE VIEW FILE AS SELECT sha256, sha1, md5, crc32, file_name, file_size, package_id
            FROM METADATA;
        CREATE VIEW DISTINCT_HASH AS SELECT DISTINCT sha256, sha1, md5 FROM METADATA;
        CREATE TABLE PKG (package_id INTEGER); CREATE TABLE OS (x); CREATE TABLE MFG (y);
        CREATE TABLE VERSION (version, build_set, build_date, release_date, description);
        INSERT INTO VERSION VALUES ('2099.03.1', 'Modern', '2099-03-01', '2099-03-02', 'full');
        INSERT INTO METADATA VALUES (1, 7, 'a.exe', 10, '0000ABCD', '{MD5_A}', '{SHA1_A}',
            '{SHA256_A}', 'exe', '');
        """,
    )
    assert V3.detect(head(db), db)
    sink = load(V3, db)
    assert sink.entries == [
        {
            "line": 1,
            "md5": "c" * 32,
            "sha1": "b" * 40,
            "sha256": "a" * 64,
            "name": "a.exe",
            "size": 10,
            "meta": {"crc32": "0000abcd", "package_id": 7},
        }
    ]
    assert sink.facts["build_set"] == "Modern"


def test_v3_several_version_rows_become_lists(tmp_path: Path) -> None:
    db = make_db(
        tmp_path / "two.db",
        RDS_V3_SCHEMA
        + """
        INSERT INTO VERSION VALUES ('2099.01.1', 'Modern', 'b1', 'r1', 'one');
        INSERT INTO VERSION VALUES ('2099.01.2', 'Modern', 'b2', 'r2', 'two');
        """,
        [(SHA256_A, SHA1_A, MD5_A, "0000ABCD", "x", 1, 1)],
    )
    sink = load(V3, db)
    assert sink.facts["nsrl_version"] == ["2099.01.1", "2099.01.2"]
    assert sink.facts["description"] == ["one", "two"]


def test_v3_name_that_is_not_utf8_is_handed_over_as_bytes(tmp_path: Path) -> None:
    db = make_db(tmp_path / "latin.db", RDS_V3_SCHEMA)
    conn = sqlite3.connect(db)
    conn.execute(
        "INSERT INTO FILE VALUES (?, ?, ?, ?, CAST(? AS TEXT), ?, ?)",
        (SHA256_A, SHA1_A, MD5_A, "0000ABCD", b"caf\xe9.txt", 5, 1),
    )
    conn.commit()
    conn.close()
    sink = load(V3, db)
    assert [e["name"] for e in sink.entries] == [b"caf\xe9.txt"]


def test_v3_undecodable_row_midway_loses_and_repeats_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An invalid UTF-8 cell in the third batch: the stream goes on from the same row."""
    monkeypatch.setattr(nsrl, "FETCH_ROWS", 2)
    db = make_db(tmp_path / "mid.db", RDS_V3_SCHEMA)
    conn = sqlite3.connect(db)
    for i in range(7):
        name = b"bad\xff%d" % i if i in (4, 6) else b"ok%d" % i
        conn.execute(
            "INSERT INTO FILE VALUES (?, ?, ?, ?, CAST(? AS TEXT), ?, ?)",
            (SHA256_A, SHA1_A, MD5_A, "0000ABCD", name, i, 1),
        )
    conn.commit()
    conn.close()
    sink = load(V3, db)
    assert [(e["line"], e["size"], e["name"]) for e in sink.entries] == [
        (1, 0, "ok0"),
        (2, 1, "ok1"),
        (3, 2, "ok2"),
        (4, 3, "ok3"),
        (5, 4, b"bad\xff4"),
        (6, 5, "ok5"),
        (7, 6, b"bad\xff6"),
    ]


def test_v3_bad_digest_row_is_reported_and_the_rest_loaded(tmp_path: Path) -> None:
    db = make_db(
        tmp_path / "bad.db",
        RDS_V3_SCHEMA,
        [
            (SHA256_A, SHA1_A, MD5_A, "0000ABCD", "good", 1, 1),
            ("XYZ", None, "", "0", "bad", 2, 1),
            (None, None, MD5_A.lower(), None, "md5 only", None, None),
        ],
    )
    sink = load(V3, db)
    assert [e["name"] for e in sink.entries] == ["good", "md5 only"]
    assert sink.entries[1]["meta"] == {} and sink.entries[1]["size"] is None
    assert [b[0] for b in sink.bad] == [2]
    with pytest.raises(MalformedInput):
        load(V3, db, strict=True)


@pytest.mark.parametrize("fixture", ["nsrl-v3-corrupt.db", "nsrl-v3-truncated.db"])
def test_v3_corrupt_database_is_a_hashset_error(fixture: str) -> None:
    path = HERE / fixture
    assert V3.detect(head(path), path)  # page 1 (the schema) is intact: still claimed
    with pytest.raises(HashSetError) as info:
        load(V3, path)
    assert "\n" not in info.value.message
    assert fixture in info.value.message
    assert info.value.hint


def test_v3_truncated_on_a_page_boundary_without_header_size(tmp_path: Path) -> None:
    """A header whose page count is not valid: SQLite itself must notice the missing pages."""
    data = bytearray((HERE / "nsrl-v3-mini.db").read_bytes())
    data[92:96] = (int.from_bytes(data[92:96], "big") + 1).to_bytes(4, "big")  # invalidate
    path = tmp_path / "cut.db"
    path.write_bytes(bytes(data[: len(data) // 2 // 1024 * 1024]))
    with pytest.raises(HashSetError):
        load(V3, path)


def test_v3_garbage_schema_page_is_a_hashset_error(tmp_path: Path) -> None:
    data = bytearray((HERE / "nsrl-v3-mini.db").read_bytes())
    data[100:1024] = b"\xff" * 924
    path = tmp_path / "garbage.db"
    path.write_bytes(bytes(data))
    V3.detect(head(path), path)  # may or may not claim it, but never raises
    with pytest.raises(HashSetError) as info:
        load(V3, path)
    assert "\n" not in info.value.message


def test_v3_refuses_a_database_with_an_unmerged_wal(tmp_path: Path) -> None:
    """immutable=1 ignores the -wal file: reading would silently miss its rows."""
    live = tmp_path / "live"
    live.mkdir()
    db = make_db(live / "rds.db", RDS_V3_SCHEMA, [(SHA256_A, SHA1_A, MD5_A, "0", "x", 1, 1)])
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(
        "INSERT INTO FILE VALUES (?, ?, ?, '0', 'only in the wal', 2, 1)", (SHA256_A, SHA1_A, MD5_A)
    )
    conn.commit()
    copy = tmp_path / "copy"
    shutil.copytree(live, copy)  # the db and its -wal, as an examiner might receive them
    conn.close()
    assert (copy / "rds.db-wal").stat().st_size > 0
    with pytest.raises(HashSetError, match="write-ahead log"):
        load(V3, copy / "rds.db")
    assert len(load(V3, db).entries) == 2  # closed cleanly: WAL merged, nothing refused


def test_unreadable_paths_are_hashset_errors(tmp_path: Path) -> None:
    for fmt in (V3, RDS2):
        with pytest.raises(HashSetError, match="cannot read"):
            load(fmt, tmp_path / "missing")
    with pytest.raises(HashSetError, match="not a SQLite database"):
        load(V3, HERE / "NSRLFile-rds2.txt")


def test_v3_not_nsrl_sqlite_is_refused_by_read(tmp_path: Path) -> None:
    db = make_db(tmp_path / "other.db", "CREATE TABLE notes (id INTEGER, body TEXT);")
    with pytest.raises(HashSetError):
        load(V3, db)


@pytest.mark.parametrize("fixture", ["nsrl-v3-mini.db", "nsrl-v3-renamed.db"])
def test_v3_source_database_is_never_modified(tmp_path: Path, fixture: str) -> None:
    folder = tmp_path / "read only # dir?"
    folder.mkdir()
    path = folder / "RDS 2099.01.1 #1?.db"
    shutil.copy2(HERE / fixture, path)
    before = (path.read_bytes(), path.stat().st_mtime_ns, sorted(os.listdir(folder)))
    path.chmod(stat.S_IRUSR | stat.S_IRGRP)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert V3.detect(head(path), path)
        sink = load(V3, path)
        assert sink.entries and not sink.bad
    finally:
        folder.chmod(stat.S_IRWXU)
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    after = (path.read_bytes(), path.stat().st_mtime_ns, sorted(os.listdir(folder)))
    assert after == before
    assert not any(n.endswith(("-wal", "-shm", "-journal")) for n in os.listdir(folder))


# --------------------------------------------------------------------------- RDS 2.x / 1.5


@pytest.mark.parametrize(
    "fixture", ["NSRLFile-rds2.txt", "NSRLFile-rds15.txt", "NSRLFile-rds2-bad.txt"]
)
def test_rds2_loads_exactly_the_expected_entries(fixture: str) -> None:
    truth = expected(fixture)
    sink = load(RDS2, HERE / fixture)
    assert canon(sink.entries, with_line=True) == canon(truth["entries"], with_line=True)
    assert [b[0] for b in sink.bad] == truth["malformed_lines"]
    assert sink.facts == truth["provenance"]


def test_rds2_names_are_latin1_with_control_characters_and_commas() -> None:
    names = {e["name"] for e in load(RDS2, HERE / "NSRLFile-rds2.txt").entries}
    assert {"café.txt", "ctl\x1bname\x07.dll", "report, final.doc", "ÅNGSTRÖM.TXT"} <= names
    assert "  leading spaces.txt" in names


def test_rds2_malformed_reasons_and_strict_mode() -> None:
    sink = load(RDS2, HERE / "NSRLFile-rds2-bad.txt")
    (line_a, reason_a, text_a), (_, reason_b, _) = sink.bad
    assert "expected 8 fields, found 7" in reason_a
    assert isinstance(text_a, str) and text_a.startswith('"')
    assert "digest" in reason_b
    with pytest.raises(MalformedInput, match=f"line {line_a}"):
        load(RDS2, HERE / "NSRLFile-rds2-bad.txt", strict=True)


def test_rds2_odd_lines(tmp_path: Path) -> None:
    header = b'\xef\xbb\xbf"SHA-1","MD5","CRC32","FileName","FileSize","ProductCode",'
    header += b'"OpSystemCode","SpecialCode"\r\n'
    sha1, md5 = b"B" * 40, b"C" * 32
    body = [
        b'"%s","%s","0000ABCD","nul\x00name",1,2,"WIN",""\r\n' % (sha1, md5),
        b'"%s","%s","0000ABCD","two\r\nlines",3,4,"WIN",""\r\n' % (sha1, md5),
        b"\r\n",  # blank line: skipped
        b'"%s","%s","0000ABCD","bad size",x1,4,"WIN",""\r\n' % (sha1, md5),
        b'"%s","%s","","no crc",,,"",""\r\n' % (sha1, md5),
    ]
    path = tmp_path / "NSRLFile.txt"
    path.write_bytes(header + b"".join(body))
    assert RDS2.detect(head(path), path)
    sink = load(RDS2, path)
    assert [(e["line"], e["name"], e["size"]) for e in sink.entries] == [
        (2, "nul\x00name", 1),
        (3, "two\r\nlines", 3),
        (7, "no crc", None),
    ]
    assert sink.entries[-1]["meta"] == {}
    assert [(b[0], b[1].split(":")[0]) for b in sink.bad] == [(6, "FileSize is not a number")]


def test_rds2_header_in_any_column_order(tmp_path: Path) -> None:
    path = tmp_path / "NSRLFile.txt"
    path.write_bytes(
        b'"SHA-1","ProductCode","FileName","MD5"\n"'
        + b"b" * 40
        + b'",5,"x.txt","'
        + b"c" * 32
        + b'"\n'
    )
    assert RDS2.detect(head(path), path)
    sink = load(RDS2, path)
    assert sink.entries == [
        {
            "line": 2,
            "md5": "c" * 32,
            "sha1": "b" * 40,
            "sha256": None,
            "name": "x.txt",
            "size": None,
            "meta": {"product_code": 5},
        }
    ]


def test_rds2_refuses_a_file_without_the_header(tmp_path: Path) -> None:
    path = tmp_path / "hashes.txt"
    path.write_text("d41d8cd98f00b204e9800998ecf8427e  empty\n")
    with pytest.raises(HashSetError):
        load(RDS2, path)
    path.write_bytes(b"")
    with pytest.raises(HashSetError):
        load(RDS2, path)


# --------------------------------------------------------------------------- detection


@pytest.fixture
def others(tmp_path: Path) -> dict[str, Path]:
    files = {
        "vics.json": b'{"odata.metadata": "http://github.com/ICMEC/ProjectVic/DataModels/'
        b'1.3.xml#Cases", "value": [{"CaseID": 1, "Media": []}]}',
        "md5sum.txt": b"d41d8cd98f00b204e9800998ecf8427e  empty.txt\n",
        "empty.bin": b"",
        "sha1-csv.txt": b'"SHA-1","Comment"\n"' + b"b" * 40 + b'","x"\n',
    }
    out = {}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        out[name] = tmp_path / name
    out["case.db"] = make_db(
        tmp_path / "case.db",
        "CREATE TABLE files (id INTEGER, md5 TEXT, sha1 TEXT, sha256 TEXT, file_name TEXT);",
    )
    return out


V3_FILES = ["nsrl-v3-mini.db", "nsrl-v3-renamed.db", "nsrl-v3-corrupt.db", "nsrl-v3-truncated.db"]
RDS2_FILES = ["NSRLFile-rds2.txt", "NSRLFile-rds15.txt", "NSRLFile-rds2-bad.txt"]


@pytest.mark.parametrize("fixture", V3_FILES + RDS2_FILES)
def test_detect_claims_only_its_own_fixtures(fixture: str) -> None:
    path = HERE / fixture
    assert V3.detect(head(path), path) is (fixture in V3_FILES)
    assert RDS2.detect(head(path), path) is (fixture in RDS2_FILES)


@pytest.mark.parametrize(
    "name", ["vics.json", "md5sum.txt", "empty.bin", "sha1-csv.txt", "case.db"]
)
def test_detect_rejects_other_files(others: dict[str, Path], name: str) -> None:
    path = others[name]
    assert not V3.detect(head(path), path)
    assert not RDS2.detect(head(path), path)


def test_detect_does_not_touch_the_database_folder(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    shutil.copy2(HERE / "nsrl-v3-mini.db", path)
    V3.detect(head(path), path)
    assert sorted(os.listdir(tmp_path)) == ["x.db"]


def test_registry_holds_both_formats() -> None:
    from examkit.plugins import registry

    found = {f.name: f for f in registry().hashset_formats}
    assert (found["nsrl-v3"].priority, found["nsrl-rds2"].priority) == (90, 75)
    assert all(isinstance(f, HashSetFormat) for f in found.values())


# --------------------------------------------------------------------------- hfind oracle


@pytest.mark.skipif(shutil.which("hfind") is None, reason="The Sleuth Kit's hfind is not installed")
@pytest.mark.parametrize("fixture", ["NSRLFile-rds2.txt", "NSRLFile-rds15.txt"])
def test_hfind_finds_what_the_loader_reads(tmp_path: Path, fixture: str) -> None:
    """hfind (TSK) indexes the same NSRLFile and finds each md5 the loader produced."""
    db = tmp_path / fixture
    shutil.copy2(HERE / fixture, db)
    subprocess.run(["hfind", "-i", "nsrl-md5", str(db)], check=True, capture_output=True)
    entries = load(RDS2, HERE / fixture).entries
    md5s = sorted({e["md5"] for e in entries})
    missing = "0" * 32
    done = subprocess.run(
        ["hfind", str(db), *md5s, missing], check=True, capture_output=True, timeout=60
    )
    answers: dict[str, str] = {}
    for line in done.stdout.decode("latin-1").splitlines():
        digest, _, rest = line.partition("\t")
        answers.setdefault(digest.lower(), rest)
    assert answers[missing] == "Hash Not Found"
    for digest in md5s:
        assert answers.get(digest, "Hash Not Found") != "Hash Not Found", digest
    # hfind prints the name too; compare where it has no comma or control character
    for e in entries:
        if e["name"].isprintable() and "," not in e["name"] and e["md5"] in answers:
            same = [x for x in entries if x["md5"] == e["md5"]]
            if len({x["name"] for x in same}) == 1:
                assert answers[e["md5"]] == e["name"]
