"""Known-bad hash-set loaders: VICS JSON, Interpol ICSE CSV, HashKeeper, EnCase ``.hash``, PDQ.

The fixtures in ``tests/fixtures/hashsets`` come from ``make_known_bad_sets.py``
(synthetic hashes only); each ``<file>.expected.json`` is what that script put
in, so the loaders are checked against an independent truth, not against
themselves. The real VICS files of ``../shared/corpus/hashsets`` and The Sleuth
Kit's ``hfind`` are used as further oracles when present.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from examkit.hashformat import (
    DIGESTS,
    HEAD_BYTES,
    PERCEPTUAL,
    HashSetError,
    HashSetFormat,
    MalformedInput,
)
from examkit.hashsets import Library, detect_format
from examkit.plugins import registry
from examkit_plugins.hashsets import encase, hashkeeper, icse, pdq, vics
from examkit_plugins.hashsets.encase import EnCaseHashFormat
from examkit_plugins.hashsets.hashkeeper import HashKeeperFormat
from examkit_plugins.hashsets.icse import IcseCsvFormat
from examkit_plugins.hashsets.pdq import PdqFormat
from examkit_plugins.hashsets.vics import VicsFormat

FIXTURES = Path(__file__).parent / "fixtures" / "hashsets"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "hashsets"
HEX = re.compile(r"[0-9a-f]+")

FORMATS: dict[str, HashSetFormat] = {
    f.name: f
    for f in (VicsFormat(), IcseCsvFormat(), HashKeeperFormat(), EnCaseHashFormat(), PdqFormat())
}
# fixture -> the format that must claim it (None: none of these)
OWN: dict[str, str | None] = {
    "vics-1.2-media.json": "vics",
    "vics-1.3-cases.json": "vics",
    "vics-2.0-cases.json": "vics",
    "vics-missing-hash.json": "vics",
    "vics-truncated.json": "vics",
    "icse.csv": "icse-csv",
    "icse-bad.csv": "icse-csv",
    "hashkeeper.hsh": "hashkeeper",
    "encase.hash": "encase-hash",
    "encase-truncated.hash": "encase-hash",
    "encase-bad-magic.hash": None,
    "vics-2.0-pdq.json": "vics",
    "pdq-list.pdq": "pdq",
    "pdq-threatexchange.csv": "pdq",
    "pdq-bad.pdq": "pdq",
}
# fixtures recognised by their name, not their content (bare 64-hex lines: see pdq.py)
BY_NAME = {"pdq-list.pdq", "pdq-bad.pdq"}  # bare or labelled lines: PDQ by the name only
LOADABLE = sorted(name for name in OWN if (FIXTURES / f"{name}.expected.json").exists())

# Other formats' first bytes: none of these loaders may claim them.
FOREIGN: dict[str, bytes] = {
    "md5sum": (
        b"d41d8cd98f00b204e9800998ecf8427e  empty.txt\n0cc175b9c0f1b6a831c399e269772661 *a.bin\n"
    ),
    "nsrl-2": (
        b'"SHA-1","MD5","CRC32","FileName","FileSize","ProductCode","OpSystemCode","SpecialCode"\r\n'
        b'"0000002D9D62AEBE1E0E9DB6C4C4C7C16A163D2C","1D6EBB5A789ABD108FF578263E1F40F3",'
        b'"FFFFFFFF","_sfx_0024._p",4109,21000,"358",""\r\n'
    ),
    "hashdeep": (
        b"%%%% HASHDEEP-1.0\n%%%% size,md5,sha256,filename\n"
        b"## Invoked from: /tmp\n## $ hashdeep -r .\n##\n"
        b"0,d41d8cd98f00b204e9800998ecf8427e,"
        b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855,./empty\n"
    ),
    "sha256sum": (
        b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  empty.txt\n"
        b"ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb *a.bin\n"
    ),
    "bsd": (
        b"SHA256 (empty.txt) = e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        b"MD5 (a.bin) = 0cc175b9c0f1b6a831c399e269772661\n"
    ),
    "plain-sha256": (
        b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        b"CA978112CA1BBDCAFAC231B39A23DC4DA786EFF8147C4E72B9807785AFEE48BB\n"
    ),
    "hashdeep-sha256": (
        b"%%%% HASHDEEP-1.0\n%%%% sha256,filename\n## $ hashdeep -c sha256 -r .\n##\n"
        b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855,./empty\n"
    ),
    "sha256-size-csv": (
        b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855,4096,a.bin\n"
        b"ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb,1048576,b.bin\n"
    ),
    "sqlite": b"SQLite format 3\x00" + bytes(84) + b"CREATE TABLE FILE (sha256 TEXT)",
    "plain-json": b'{"hashes": [{"md5": "d41d8cd98f00b204e9800998ecf8427e"}]}',
    "empty": b"",
}


class CollectingSink:
    """An in-memory :class:`~examkit.hashformat.EntrySink`, checking what loaders hand it."""

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
        pdq: str | bytes | None = None,
        phash: str | bytes | None = None,
    ) -> bool:
        digests: dict[str, str | None] = {}
        for algo, value in (("md5", md5), ("sha1", sha1), ("sha256", sha256)):
            if value is None or value in ("", b""):
                digests[algo] = None
                continue
            if isinstance(value, bytes) and len(value) == DIGESTS[algo]:
                text = value.hex()
            else:
                text = (value.decode("ascii") if isinstance(value, bytes) else value).strip()
                text = text.lower()
            if len(text) != 2 * DIGESTS[algo] or not HEX.fullmatch(text):
                self.malformed(line, f"not a valid {algo} digest", str(value))
                return False
            digests[algo] = text
        # perceptual hashes: keys only when given, so entries without them compare as before
        perceptual: dict[str, str] = {}
        for algo, value in (("pdq", pdq), ("phash", phash)):
            if value is None or value in ("", b""):
                continue
            if isinstance(value, bytes) and len(value) == PERCEPTUAL[algo]:
                text = value.hex()
            else:
                text = (value.decode("ascii") if isinstance(value, bytes) else value).strip()
                text = text.lower()
            if len(text) != 2 * PERCEPTUAL[algo] or not HEX.fullmatch(text):
                self.malformed(line, f"not a valid {algo} hash", str(value))
                return False
            perceptual[algo] = text
        if not any(digests.values()) and not perceptual:
            self.malformed(line, "no digest")
            return False
        assert size is None or (isinstance(size, int) and size >= 0), size
        clean = {k: v for k, v in (meta or {}).items() if v is not None and v != "" and v != []}
        json.dumps(clean)  # metadata must be JSON-serialisable
        shown = name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else name
        self.entries.append({**digests, "name": shown, "size": size, "meta": clean, **perceptual})
        return True

    def add_columns(
        self,
        digests: Mapping[str, np.ndarray],
        names_blob: bytes | None = None,
        name_spans: np.ndarray | None = None,
        sizes: np.ndarray | None = None,
    ) -> None:
        n = len(next(iter(digests.values())))
        rows: dict[str, np.ndarray] = {}
        for algo, values in digests.items():
            width = DIGESTS[algo]
            assert values.dtype == np.dtype(f"S{width}") and len(values) == n
            # Bytes, not elements: numpy drops trailing NULs from ``S`` elements.
            rows[algo] = np.ascontiguousarray(values).view(np.uint8).reshape(n, width)
        for i in range(n):
            name = None
            if names_blob is not None and name_spans is not None:
                start, end = (int(x) for x in name_spans[i])
                name = names_blob[start:end].decode("utf-8", "surrogateescape") or None
            size = None if sizes is None or int(sizes[i]) < 0 else int(sizes[i])
            entry = {algo: None for algo in DIGESTS}
            entry.update({algo: rows[algo][i].tobytes().hex() for algo in rows})
            self.entries.append({**entry, "name": name, "size": size, "meta": {}})

    def malformed(self, line: int | None, reason: str, text: str | bytes | None = None) -> None:
        if self.strict:
            raise MalformedInput(f"malformed entry at {line}: {reason}", "strict mode")
        self.bad.append((line, reason, text))

    def provenance(self, **values: Any) -> None:
        self.facts.update({k: v for k, v in values.items() if v is not None})


def load(fmt: HashSetFormat, path: Path, strict: bool = False) -> CollectingSink:
    sink = CollectingSink(strict)
    fmt.read(path, sink)
    return sink


def head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(HEAD_BYTES)


def expected(name: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    return data


# -- loading ----------------------------------------------------------------------------------
def test_the_fixtures_are_there() -> None:
    missing = [name for name in OWN if not (FIXTURES / name).exists()]
    assert not missing, f"run tests/fixtures/hashsets/make_known_bad_sets.py ({missing})"
    assert len(LOADABLE) == 12


@pytest.mark.parametrize("name", LOADABLE)
def test_fixture_loads_exactly_the_expected_entries(name: str) -> None:
    fmt = FORMATS[OWN[name] or ""]
    sink = load(fmt, FIXTURES / name)
    assert sink.entries == expected(name)
    malformed_file = FIXTURES / f"{name}.malformed.json"
    want = json.loads(malformed_file.read_text()) if malformed_file.exists() else []
    assert [line for line, _reason, _text in sink.bad] == want


@pytest.mark.parametrize(
    ("name", "facts"),
    [
        ("vics-1.2-media.json", {"vics_version": "1.2", "odata_context": "1.2.xml#Media"}),
        ("vics-1.3-cases.json", {"vics_version": "1.3", "odata_context": "1.3.xml#Cases"}),
        ("vics-2.0-cases.json", {"vics_version": "2.0", "odata_context": "$metadata#Cases"}),
        ("encase.hash", {"set_name": "examkit synthetic set", "set_category": "Notable"}),
        ("hashkeeper.hsh", {"hashkeeper_hashset_ids": [7]}),
    ],
)
def test_provenance_comes_from_the_file(name: str, facts: dict[str, Any]) -> None:
    sink = load(FORMATS[OWN[name] or ""], FIXTURES / name)
    for key, value in facts.items():
        if key == "odata_context":
            assert sink.facts[key].startswith("http://github.com/")
            assert sink.facts[key].endswith(value)
        else:
            assert sink.facts[key] == value
    if name == "encase.hash":
        assert sink.facts["encase_records"] == 6


def test_icse_keeps_its_header_in_the_provenance() -> None:
    sink = load(FORMATS["icse-csv"], FIXTURES / "icse.csv")
    assert sink.facts["icse_columns"][:4] == ["MD5", "SHA1", "PhotoDNA", "Image ID"]
    assert sink.facts["icse_columns"][-1] == "Notes"


def test_vics_metadata_types() -> None:
    sink = load(FORMATS["vics"], FIXTURES / "vics-1.2-media.json")
    first = sink.entries[0]
    assert first["size"] == 48213 and first["name"] == "img_0001.jpg"
    meta = first["meta"]
    assert meta["category"] == 1 and meta["victim_identified"] is True
    assert meta["offender_identified"] is False and meta["tags"] == ["alpha", "indoor"]
    assert sink.entries[3]["meta"]["category"] == 0  # 0 is a category, not "missing"
    cases = load(FORMATS["vics"], FIXTURES / "vics-2.0-cases.json").entries
    assert "category" not in cases[0]["meta"]  # null
    assert cases[2]["md5"] is None and cases[2]["sha1"] is not None  # SHA1-only Media


def test_encase_keeps_an_md5_ending_in_a_nul_byte() -> None:
    entries = load(FORMATS["encase-hash"], FIXTURES / "encase.hash").entries
    assert any(e["md5"].endswith("00") for e in entries)
    assert all(len(e["md5"]) == 32 for e in entries)


@pytest.mark.parametrize("module", [vics, icse, hashkeeper, encase, pdq])
def test_each_module_registers_its_format(module: Any) -> None:
    registered: list[Any] = []
    module.register_hashset_formats(registered.append)
    assert len(registered) == 1 and isinstance(registered[0], HashSetFormat)
    fmt = registered[0]
    assert fmt.name in FORMATS and type(fmt) is type(FORMATS[fmt.name])
    priorities = {"encase-hash": 90, "vics": 80, "hashkeeper": 70, "icse-csv": 70, "pdq": 35}
    assert fmt.priority == priorities[fmt.name] and fmt.description


# -- detection --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(OWN))
def test_detection_of_the_fixtures(name: str) -> None:
    path = FIXTURES / name
    claims = {fmt.name for fmt in FORMATS.values() if fmt.detect(head(path), path)}
    assert claims == ({OWN[name]} if OWN[name] else set())


def _foreign_files() -> list[Path]:
    """Other loaders' fixtures sharing the folder (NSRL and the like), if present."""
    mine = set(OWN)
    return sorted(
        p
        for p in FIXTURES.iterdir()
        if p.is_file() and p.name not in mine and p.suffix not in (".json", ".py")
    )


@pytest.mark.parametrize("sample", sorted(FOREIGN))
def test_other_formats_are_not_claimed(sample: str, tmp_path: Path) -> None:
    path = tmp_path / "set.hash"  # an extension that must not matter
    path.write_bytes(FOREIGN[sample])
    for fmt in FORMATS.values():
        assert not fmt.detect(FOREIGN[sample], path), (fmt.name, sample)


def test_other_loaders_fixtures_are_not_claimed() -> None:
    for path in _foreign_files():
        for fmt in FORMATS.values():
            assert not fmt.detect(head(path), path), (fmt.name, path.name)


def test_detection_ignores_the_extension(tmp_path: Path) -> None:
    for name, owner in OWN.items():
        if owner is None:
            continue
        disguised = tmp_path / f"{name}.txt"
        shutil.copyfile(FIXTURES / name, disguised)
        # a list of bare hashes is PDQ only by its name: renamed, it is not claimed
        assert FORMATS[owner].detect(head(disguised), disguised) is (name not in BY_NAME)


# -- malformed entries, broken files, strict mode -------------------------------------------------
def test_vics_malformed_media_are_numbered_and_explained() -> None:
    sink = load(FORMATS["vics"], FIXTURES / "vics-missing-hash.json")
    (i2, why2, text2), (i4, why4, _text4) = sink.bad
    assert (i2, i4) == (2, 4)
    assert "no MD5, SHA1 or PDQ" in why2 and "MD5 is not 32 hex digits" in why4
    assert isinstance(text2, str) and "MediaID" in text2


def test_icse_bad_lines_are_counted_with_their_line_numbers() -> None:
    sink = load(FORMATS["icse-csv"], FIXTURES / "icse-bad.csv")
    assert [(line, reason) for line, reason, _ in sink.bad] == [
        (3, "MD5 is not 32 hex digits"),
        (5, "5 fields, the header has 11"),
    ]
    assert len(sink.entries) == 3


@pytest.mark.parametrize("name", ["icse-bad.csv", "vics-missing-hash.json", "pdq-bad.pdq"])
def test_strict_mode_raises_on_the_first_bad_entry(name: str) -> None:
    with pytest.raises(MalformedInput):
        load(FORMATS[OWN[name] or ""], FIXTURES / name, strict=True)


def test_truncated_vics_raises_naming_the_position() -> None:
    with pytest.raises(HashSetError) as info:
        load(FORMATS["vics"], FIXTURES / "vics-truncated.json")
    message = str(info.value)
    assert "\n" not in message and info.value.hint
    assert re.search(r"truncated at line \d+, column \d+ \(character offset \d+\)", message)
    size = len((FIXTURES / "vics-truncated.json").read_text(encoding="utf-8-sig"))
    assert f"(character offset {size})" in message


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (
            '{"odata.metadata": "x/1.2.xml#Media", "value": [{"MD5": "a"}; 1]}',
            r"line 1, column 61 \(character offset 60\)",
        ),
        ('{"odata.metadata": "x/1.2.xml#Media", "value": [{"MD5": tru}]}', r"invalid VICS JSON"),
        ('{"odata.metadata": "x/1.2.xml#Media", "value": []} trailing', r"unexpected data"),
        ('{"odata.metadata": "x/1.2.xml#Media", "value": {}}', r"'value' is not an array"),
        ('{"odata.metadata": "x/1.2.xml#Media"}', r"no 'value' array"),
        ('{"odata.metadata": "x/1.2.xml#Media",\n "value": [\n  {"MD5": "', r"truncated at line 3"),
        ('{"odata.metadata": "x/1.2.xml#Media", "value": [{"IsDistributed": tr', r"truncated"),
        ('{"odata.metadata": "x/1.2.xml#Media", "value": [{"Series": "\\u00', r"truncated"),
        ('{"odata.metadata": "x/1.2.xml#Media", "value": [{"MediaSize": 12', r"truncated"),
        ('{"odata.metadata": "x/1.2.xml#Media", "value": [{"MediaSize": 1.', r"truncated"),
        ('{"odata.metadata": "x/1.2.xml#Media", "value": [{"MediaSize": 1.}]}', r"invalid"),
    ],
)
def test_broken_vics_json_raises(text: str, pattern: str, tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(HashSetError, match=pattern):
        load(FORMATS["vics"], path)


def test_vics_that_is_not_utf8_raises(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"odata.metadata": "x/1.2.xml#Media", "value": [{"Comments": "\xe9"}]}')
    with pytest.raises(HashSetError, match="not UTF-8"):
        load(FORMATS["vics"], path)


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 1000])
def test_vics_reads_the_same_whatever_the_chunk_size(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vics, "CHUNK", chunk)
    for name in LOADABLE:
        if OWN[name] == "vics":
            assert load(FORMATS["vics"], FIXTURES / name).entries == expected(name)
    with pytest.raises(HashSetError, match="truncated"):
        load(FORMATS["vics"], FIXTURES / "vics-truncated.json")


def test_vics_streams_a_case_without_holding_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One Case of 20,000 Media, on one line: the buffer stays a few chunks long."""
    count = 20_000
    media = [
        {"MD5": f"{i:032x}", "SHA1": f"{i:040x}", "MediaSize": i, "IsDistributed": i % 2 == 0}
        for i in range(1, count + 1)
    ]
    doc = {"@odata.context": "x/2.0.xml/US/$metadata#Cases", "value": [{"Media": media}]}
    path = tmp_path / "big.json"
    path.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
    monkeypatch.setattr(vics, "CHUNK", 4096)
    longest = 0
    fill = vics._Stream._fill

    def watched(self: Any) -> bool:
        nonlocal longest
        result: bool = fill(self)
        longest = max(longest, len(self.buf))
        return result

    monkeypatch.setattr(vics._Stream, "_fill", watched)
    sink = load(FORMATS["vics"], path)
    assert len(sink.entries) == count and not sink.bad
    assert sink.entries[-1]["md5"] == f"{count:032x}" and sink.entries[-1]["size"] == count
    assert path.stat().st_size > 100 * 4096 and longest <= 3 * 4096


def test_encase_bad_magic_raises() -> None:
    with pytest.raises(HashSetError, match="not an EnCase hash set") as info:
        load(FORMATS["encase-hash"], FIXTURES / "encase-bad-magic.hash")
    assert info.value.hint


def test_encase_truncated_raises_before_importing_anything() -> None:
    sink = CollectingSink()
    with pytest.raises(HashSetError, match=r"truncated: the header says 6 records"):
        FORMATS["encase-hash"].read(FIXTURES / "encase-truncated.hash", sink)
    assert sink.entries == []


def test_encase_trailing_data_and_short_header_raise(tmp_path: Path) -> None:
    data = (FIXTURES / "encase.hash").read_bytes()
    longer = tmp_path / "longer.hash"
    longer.write_bytes(data + bytes(18))
    with pytest.raises(HashSetError, match="data after its last record"):
        load(FORMATS["encase-hash"], longer)
    short = tmp_path / "short.hash"
    short.write_bytes(data[:0x200])
    with pytest.raises(HashSetError, match="truncated"):
        load(FORMATS["encase-hash"], short)


def test_encase_empty_records_are_malformed(tmp_path: Path) -> None:
    data = bytearray((FIXTURES / "encase.hash").read_bytes())
    data[0x480 + 18 : 0x480 + 36] = bytes(18)  # blank the second record
    path = tmp_path / "holey.hash"
    path.write_bytes(bytes(data))
    sink = load(FORMATS["encase-hash"], path)
    assert [line for line, _r, _t in sink.bad] == [2]
    want = expected("encase.hash")
    assert sink.entries == want[:1] + want[2:]


# -- PDQ lists and perceptual hashes --------------------------------------------------------------
def synthetic(n: int, kind: str) -> str:
    """The fixture script's PDQ / pHash of seed ``n`` (see its docstring)."""
    digest = hashlib.sha256(f"examkit-synthetic-{n}-{kind}".encode()).hexdigest()
    return digest if kind == "pdq" else digest[:16]


def test_a_bare_64_hex_list_is_sha256_unless_named_pdq(tmp_path: Path) -> None:
    lines = [hashlib.sha256(f"bare-{i}".encode()).hexdigest() for i in range(6)]
    data = ("\n".join(lines) + "\n").encode()
    formats = registry().hashset_formats
    as_text = tmp_path / "list.txt"
    as_text.write_bytes(data)
    assert not FORMATS["pdq"].detect(data, as_text)
    fmt = detect_format(as_text, formats)
    assert fmt.name == "plain"
    sink = load(fmt, as_text)
    assert [e["sha256"] for e in sink.entries] == lines
    assert not any("pdq" in e for e in sink.entries)
    as_pdq = tmp_path / "list.PDQ"  # the suffix in any case
    as_pdq.write_bytes(data)
    fmt = detect_format(as_pdq, formats)
    assert fmt.name == "pdq"
    sink = load(fmt, as_pdq)
    assert [e["pdq"] for e in sink.entries] == lines
    assert all(e["sha256"] is None for e in sink.entries)


@pytest.mark.parametrize("tail", [b",90,/photos/a.jpg", b",100", b",0,a,b.jpg"])
def test_quality_lines_are_pdq_whatever_the_name(tail: bytes, tmp_path: Path) -> None:
    data = b"".join(hashlib.sha256(b"%d" % i).hexdigest().encode() + tail + b"\n" for i in range(4))
    path = tmp_path / "set.txt"
    path.write_bytes(data)
    assert detect_format(path, registry().hashset_formats).name == "pdq"


def test_labelled_lines_are_pdq_only_by_name(tmp_path: Path) -> None:
    """``HEX<TAB>name`` may be a SHA-256 list with names: never guessed to be PDQ."""
    data = b"".join(hashlib.sha256(b"%d" % i).hexdigest().encode() + b"\tpic.jpg\n"
                    for i in range(4))  # fmt: skip
    as_txt, as_pdq = tmp_path / "set.txt", tmp_path / "set.pdq"
    as_txt.write_bytes(data)
    as_pdq.write_bytes(data)
    with pytest.raises(HashSetError, match="no hash-set format"):
        detect_format(as_txt, registry().hashset_formats)
    assert detect_format(as_pdq, registry().hashset_formats).name == "pdq"


def test_pdq_bad_lines_are_explained() -> None:
    sink = load(FORMATS["pdq"], FIXTURES / "pdq-bad.pdq")
    reasons = {line: reason for line, reason, _text in sink.bad}
    assert "63 hex digits" in reasons[2]
    assert "not hex" in reasons[4]
    assert "MD5" in reasons[5]
    assert "quality" in reasons[7]
    assert all(isinstance(text, bytes) and text for _line, _reason, text in sink.bad)


def test_pdq_strict_mode_stops_at_the_first_bad_line() -> None:
    sink = CollectingSink(strict=True)
    with pytest.raises(MalformedInput, match=r"at 2: PDQ hash has 63 hex digits"):
        FORMATS["pdq"].read(FIXTURES / "pdq-bad.pdq", sink)
    assert sink.entries == expected("pdq-bad.pdq")[:1]


def test_pdq_names_are_the_bytes_of_the_file() -> None:
    names: list[str | bytes | None] = []
    sink = CollectingSink()
    add = sink.add

    def spy(**kwargs: Any) -> bool:
        names.append(kwargs.get("name"))
        return add(**kwargs)

    sink.add = spy  # type: ignore[method-assign]
    FORMATS["pdq"].read(FIXTURES / "pdq-list.pdq", sink)
    assert b"caf\xe9.jpg" in names  # Latin-1, not decoded
    assert "Stra\u00dfe/\u00dcn\u00efc\u00f6d\u00e9 \u5199\u771f.png".encode() in names
    assert b"crlf.jpg" in names  # the CR of a CRLF line end is not part of the name
    assert b"holiday, day 2.jpg " in names  # a trailing blank is
    assert all(name is None or isinstance(name, bytes) for name in names)


def test_threatexchange_quality_and_names() -> None:
    entries = load(FORMATS["pdq"], FIXTURES / "pdq-threatexchange.csv").entries
    assert [e["meta"]["pdq_quality"] for e in entries] == [100, 87, 0, 50, 100]
    assert entries[1]["name"] == "/data/photos/with, comma.jpg"
    assert entries[3]["name"] is None
    assert entries[2]["pdq"] == synthetic(93, "pdq")  # upper case in the file


def test_vics_media_carry_pdq_and_phash() -> None:
    sink = load(FORMATS["vics"], FIXTURES / "vics-2.0-pdq.json")
    assert not sink.bad
    media = {e["meta"]["media_id"]: e for e in sink.entries}
    assert media[3111]["pdq"] == synthetic(111, "pdq")  # a PDQ field, upper case
    assert media[3112]["pdq"] == synthetic(112, "pdq")  # AlternativeHashes
    assert media[3113]["pdq"] == synthetic(113, "pdq")
    assert media[3113]["phash"] == synthetic(113, "phash")  # a pHash field
    only = media[3114]  # a PDQ and no MD5 / SHA1
    assert only["md5"] is None and only["sha1"] is None and only["pdq"] == synthetic(114, "pdq")
    assert "pdq" not in media[3115] and media[3115]["phash"] == synthetic(115, "phash")
    assert "pdq" not in media[3116] and "phash" not in media[3116]


def test_vics_bad_pdq_is_malformed(tmp_path: Path) -> None:
    doc = {
        "@odata.context": "x/2.0.xml/US/$metadata#Cases",
        "value": [{"Media": [{"MD5": "0" * 32, "PDQ": "f" * 63}, {"PDQ": "A" * 64}]}],
    }
    path = tmp_path / "v.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    sink = load(FORMATS["vics"], path)
    assert [(line, reason) for line, reason, _text in sink.bad] == [(1, "PDQ is not 64 hex digits")]
    assert [e["pdq"] for e in sink.entries] == ["a" * 64]


@pytest.mark.skipif(
    importlib.util.find_spec("examkit.nearmatch") is None,
    reason="examkit.nearmatch (the PDQ index) is not there yet",
)
def test_pdq_list_imports_into_a_library(tmp_path: Path) -> None:
    path = FIXTURES / "pdq-list.pdq"
    result = Library(tmp_path).import_set(
        path, "pdqset", "known-bad", formats=registry().hashset_formats
    )
    info = result.info
    valid = len(expected("pdq-list.pdq"))
    assert valid == 12 and info.format == "pdq"
    assert info.algorithms["pdq"]["count"] == valid == info.entries
    assert info.algorithms["pdq"]["unique"] == valid
    assert not set(DIGESTS) & set(info.algorithms) and info.malformed == 0


def test_strict_pdq_import_leaves_no_set(tmp_path: Path) -> None:
    library = Library(tmp_path)
    with pytest.raises(MalformedInput):
        library.import_set(FIXTURES / "pdq-bad.pdq", "bad", "known-bad", PdqFormat(), strict=True)
    assert library.sets() == []


# -- independent oracles --------------------------------------------------------------------------
CAID_COUNTS = {"ART": 1, "MPG": 3, "MOV": 9, "AVI": 30, "WMV": 95}


@pytest.mark.corpus
@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"no corpus of real hash sets at {CORPUS}")
@pytest.mark.parametrize("kind", sorted(CAID_COUNTS))
def test_real_vics_files_from_the_corpus(kind: str) -> None:
    path = CORPUS / f"NSRL-CAID-{kind}.json"
    if not path.exists():
        pytest.skip(f"{path.name} is not in the corpus")
    fmt = FORMATS["vics"]
    assert fmt.detect(head(path), path)
    assert {f.name for f in FORMATS.values() if f.detect(head(path), path)} == {"vics"}
    sink = load(fmt, path)
    assert not sink.bad
    assert len(sink.entries) == CAID_COUNTS[kind]
    assert sink.facts["vics_version"] == "1.2"
    raw = json.loads(path.read_text(encoding="utf-8"))["value"]
    ids = [re.fullmatch(r'Media\("([0-9a-f]{32})"\)', m["odata.id"]) for m in raw]
    assert all(ids)
    assert [e["md5"] for e in sink.entries] == [m.group(1) for m in ids if m]
    for entry, media in zip(sink.entries, raw, strict=True):
        assert entry["sha1"] == media["SHA1"].lower()
        assert entry["size"] == int(media["MediaSize"])
        assert entry["meta"]["category"] == 8
        assert entry["name"] == media["MediaFiles"][0]["FileName"]
        assert entry["meta"]["file_path"] == media["MediaFiles"][0]["FilePath"]


HFIND = shutil.which("hfind")
needs_hfind = pytest.mark.skipif(HFIND is None, reason="The Sleuth Kit's hfind is not on PATH")


def _hfind_index(kind: str, source: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """Index ``source`` with hfind; return the copy and the index's (header, hash) lines."""
    copy = tmp_path / source.name
    shutil.copyfile(source, copy)
    done = subprocess.run(
        [str(HFIND), "-i", kind, str(copy)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / f"{source.name}-md5.idx").read_text().splitlines()
    return copy, lines


def _hfind_quick(db: Path, md5: str) -> str:
    done = subprocess.run(
        [str(HFIND), "-q", str(db), md5], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@needs_hfind
@pytest.mark.parametrize(("kind", "name"), [("encase", "encase.hash"), ("hk", "hashkeeper.hsh")])
def test_hfind_agrees(kind: str, name: str, tmp_path: Path) -> None:
    """TSK's index of the fixture holds exactly our hashes (and, for EnCase, our set name).

    Only quick (``-q``) look-ups are used: hfind 4.x's full look-ups of EnCase
    and HashKeeper sets use offsets that miss the header and fail.
    """
    sink = load(FORMATS["encase-hash" if kind == "encase" else "hashkeeper"], FIXTURES / name)
    ours = {e["md5"] for e in sink.entries}
    db, lines = _hfind_index(kind, FIXTURES / name, tmp_path)
    header = [line.split("|", 1)[1] for line in lines[:2]]
    theirs = {line.split("|", 1)[0].lower() for line in lines[2:]}
    assert theirs == ours
    if kind == "encase":
        assert header == ["encase", sink.facts["set_name"]]
    for md5 in sorted(ours):
        assert _hfind_quick(db, md5) == "1", md5
    assert _hfind_quick(db, "0" * 31 + "1") == "0"
