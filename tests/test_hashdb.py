"""The compiled index and the library: sorting, spilling, lookups, atomic and idempotent import.

Oracles: Python's own sorted()/dict over the same synthetic digests, and the
coreutils / hashdeep tools that write the text formats.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from examkit import hashdb, hashdb_write
from examkit.errors import UsageError
from examkit.hashdb import (
    _split_lines,
    _uniform_lines,
    hex_to_array,
    lookup_hex,
    lookup_lines,
    windows,
)
from examkit.hashdb_write import sort_digests
from examkit.hashformat import EntrySink, HashSetError, HashSetFormat, MalformedInput
from examkit.hashsets import Library
from examkit.plugins import registry
from tests.conftest import HASHSET_FIXTURES


def synthetic(n: int, algorithm: str = "md5", salt: str = "examkit") -> list[str]:
    return [hashlib.new(algorithm, f"{salt}-{i}".encode()).hexdigest() for i in range(n)]


def formats() -> list[HashSetFormat]:
    return registry().hashset_formats


# -- sorting ---------------------------------------------------------------
def test_sort_digests_matches_python_sorted_with_ties_duplicates_and_trailing_nuls() -> None:
    rng = np.random.default_rng(7)
    raw = [bytes(rng.integers(0, 256, 16, dtype=np.uint8)) for _ in range(3000)]
    prefix = raw[0][:8]
    raw += [prefix + bytes(rng.integers(0, 256, 8, dtype=np.uint8)) for _ in range(50)]  # ties
    raw += raw[100:140]  # exact duplicates, later entries
    raw += [bytes(15) + b"\x00", bytes(15) + b"\x01", b"\xff" * 15 + b"\x00"]  # NUL endings
    digests = np.frombuffer(b"".join(raw), dtype="S16")
    entries = np.arange(len(raw), dtype=np.uint32)
    ordered, ordered_entries, unique = sort_digests(digests, entries)
    expected = sorted(range(len(raw)), key=lambda i: (raw[i], i))
    assert ordered_entries.tolist() == expected
    assert [bytes(ordered.view(np.uint8)[i * 16 : i * 16 + 16]) for i in range(len(raw))] == [
        raw[i] for i in expected
    ]
    assert unique == len(set(raw))


class ListFormat(HashSetFormat):
    """A loader for tests: one JSON list of entries (keyword arguments of ``sink.add``)."""

    name = "test-list"

    def detect(self, head: bytes, path: Path) -> bool:
        return head.startswith(b"[")

    def read(self, path: Path, sink: EntrySink) -> None:
        for i, entry in enumerate(json.loads(path.read_text()), 1):
            sink.add(**entry, line=i)


class FailingFormat(ListFormat):
    name = "test-failing"

    def read(self, path: Path, sink: EntrySink) -> None:
        super().read(path, sink)
        raise HashSetError("the file ends in the middle of an entry", "get a complete copy")


def test_spilled_index_equals_in_memory_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    md5s = synthetic(6000)
    sha1s = synthetic(6000, "sha1")
    entries = [
        {"md5": m, "sha1": s if i % 3 else None, "name": f"file-{i}", "size": i}
        for i, (m, s) in enumerate(zip(md5s, sha1s, strict=True))
    ]
    entries += [{"md5": md5s[5], "name": "second name for 5"}]  # a digest listed twice
    source = tmp_path / "set.json"
    source.write_text(json.dumps(entries))
    indexes = []
    for spill in (hashdb_write.SPILL_BYTES, 4096):
        monkeypatch.setattr(hashdb_write, "SPILL_BYTES", spill)
        monkeypatch.setattr(hashdb_write, "FLUSH_ENTRIES", 1000)
        library = Library(tmp_path / f"lib-{spill}")
        result = library.import_set(source, "s", "known-good", ListFormat())
        assert result.info.entries == 6001
        assert result.info.algorithms["md5"] == {"count": 6001, "unique": 6000}
        assert result.info.algorithms["sha1"]["count"] == 4000
        assert not list(Path(result.info.path).glob("*.b[0-9a-f][0-9a-f]"))  # buckets removed
        indexes.append(library.open("s"))
    for index in indexes:
        for name in ("md5", "sha1"):
            table = index.digests(name)
            assert bool(np.all(table[1:] >= table[:-1]))
        hits, invalid = lookup_hex(index, [md5s[5], md5s[77].upper(), sha1s[1], "0" * 32, "xyz"])
        assert invalid == 1
        assert [(h[0], h[2]) for h in hits] == [
            (md5s[5], 5), (md5s[5], 6000), (md5s[77], 77), (sha1s[1], 1)
        ]  # fmt: skip
        assert index.entry(6000).name == b"second name for 5"
        assert index.entry(77).size == 77
    assert [p.name for p in sorted(Path(indexes[0].folder).iterdir())] == [
        p.name for p in sorted(Path(indexes[1].folder).iterdir())
    ]
    for part in ("md5.digests", "md5.entries", "sha1.digests", "names.bin"):
        assert (indexes[0].folder / part).read_bytes() == (indexes[1].folder / part).read_bytes()


# -- library ---------------------------------------------------------------
def test_failed_import_leaves_the_library_as_it_was(tmp_path: Path) -> None:
    source = tmp_path / "set.json"
    source.write_text(json.dumps([{"md5": h} for h in synthetic(10)]))
    library = Library(tmp_path / "lib")
    library.import_set(source, "good", "known-bad", ListFormat())
    before = sorted(p.name for p in library.path.iterdir())
    other = tmp_path / "other.json"
    other.write_text(json.dumps([{"md5": h} for h in synthetic(10, salt="x")]))
    with pytest.raises(HashSetError):
        library.import_set(other, "bad", "known-bad", FailingFormat())
    assert sorted(p.name for p in library.path.iterdir()) == before
    assert [s.name for s in library.sets()] == ["good"]


def test_import_is_idempotent_by_content(tmp_path: Path) -> None:
    source = tmp_path / "set.json"
    source.write_text(json.dumps([{"md5": h} for h in synthetic(10)]))
    copy = tmp_path / "copy-with-another-name.json"
    shutil.copy(source, copy)
    library = Library(tmp_path / "lib")
    first = library.import_set(source, "one", "known-bad", ListFormat())
    again = library.import_set(copy, "two", "known-bad", ListFormat())
    same_name = library.import_set(source, "one", "known-bad", ListFormat())
    assert first.created and not again.created and not same_name.created
    assert again.info.name == same_name.info.name == "one"
    assert [s.name for s in library.sets()] == ["one"]
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps([{"md5": h} for h in synthetic(11)]))
    with pytest.raises(UsageError, match="already named"):
        library.import_set(changed, "one", "known-bad", ListFormat())
    library.remove("one")
    assert library.sets() == []
    with pytest.raises(UsageError):
        library.get("one")


def test_malformed_entries_are_counted_and_strict_stops(tmp_path: Path) -> None:
    good = synthetic(3)
    source = tmp_path / "set.md5"
    source.write_text(
        f"{good[0]}  a\nnot a hash line\n{good[1]}  b\n{good[2][:-1]}  short\n{good[2]}  c\n"
    )
    library = Library(tmp_path / "lib")
    result = library.import_set(source, "s", "known-good", formats=formats())
    assert result.info.format == "md5sum"
    assert result.info.entries == 3 and result.info.malformed == 2
    assert [(m["line"], m["reason"]) for m in result.malformed_examples] == [
        (2, "not a hash line"), (4, "not a hash line"),
    ]  # fmt: skip
    other = tmp_path / "other.md5"
    other.write_text(source.read_text() + "\n")
    with pytest.raises(MalformedInput, match="line 2"):
        Library(tmp_path / "lib2").import_set(other, "s", "known-good", formats=formats(),
                                              strict=True)  # fmt: skip
    assert not [p for p in (tmp_path / "lib2").iterdir() if p.name != ".lock"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"PK\x03\x04 not a hash set at all", "no hash-set format"),
        (b'{"odata.metadata": "x/1.2.xml#Media", "value": [{"MD5": "', "truncated"),
    ],
)
def test_unreadable_files_give_one_clear_error_and_change_nothing(
    tmp_path: Path, content: bytes, message: str
) -> None:
    source = tmp_path / "input"
    source.write_bytes(content)
    library = Library(tmp_path / "lib")
    with pytest.raises(HashSetError, match=message):
        library.import_set(source, "s", "known-bad", formats=formats())
    assert library.sets() == []
    assert not [p for p in library.path.iterdir() if p.name != ".lock"]


def test_corrupt_nsrl_database_is_refused(tmp_path: Path) -> None:
    library = Library(tmp_path / "lib")
    with pytest.raises(HashSetError):
        library.import_set(HASHSET_FIXTURES / "nsrl-v3-corrupt.db", "n", "known-good",
                           formats=formats())  # fmt: skip
    assert library.sets() == []


# -- text formats against the tools that write them ---------------------------
@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    names = ["plain.txt", "with space.txt", "back\\slash.txt", "new\nline.txt", "caf\xe9.txt"]
    for i, name in enumerate(names):
        (root / name).write_bytes(f"content {i}\n".encode() * (i + 1))
    return root


def _oracle(root: Path) -> dict[str, str]:
    return {hashlib.md5(p.read_bytes()).hexdigest(): p.name for p in root.iterdir() if p.is_file()}


@pytest.mark.parametrize(
    ("tool", "expected_format"),
    [
        (["md5sum"], "md5sum"),
        (["md5sum", "--tag"], "bsd"),
        (["sha256sum"], "md5sum"),
        (["hashdeep", "-c", "md5,sha256"], "hashdeep"),
    ],
)
def test_text_lists_written_by_real_tools(
    tree: Path, tmp_path: Path, tool: list[str], expected_format: str
) -> None:
    if shutil.which(tool[0]) is None:
        pytest.skip(f"{tool[0]} not installed")
    names = sorted(p.name for p in tree.iterdir())
    if tool[0] == "hashdeep":  # hashdeep writes a newline in a name as it is: unreadable
        names = [n for n in names if "\n" not in n]
    listing = subprocess.run([*tool, *names], cwd=tree, capture_output=True, check=True).stdout
    source = tmp_path / "list.txt"
    source.write_bytes(listing)
    library = Library(tmp_path / "lib")
    result = library.import_set(source, "s", "known-good", formats=formats())
    assert result.info.format == expected_format
    assert result.info.malformed == 0
    assert result.info.entries == len(names)
    index = library.open("s")
    algorithm = "sha256" if tool[0] == "sha256sum" else "md5"
    truth = {hashlib.new(algorithm, (tree / n).read_bytes()).hexdigest(): n for n in names}
    hits, _ = lookup_hex(index, list(truth))
    assert {h[0] for h in hits} == set(truth)
    for value, _algorithm, entry in hits:
        name = index.entry(entry).name
        assert name is not None
        assert os.fsdecode(name).rsplit("/", 1)[-1] == truth[value]


def test_plain_list_and_crlf(tmp_path: Path) -> None:
    values = synthetic(5) + synthetic(2, "sha1")
    source = tmp_path / "plain.txt"
    source.write_bytes(b"\r\n".join(v.upper().encode() for v in values) + b"\r\n")
    library = Library(tmp_path / "lib")
    result = library.import_set(source, "p", "known-good", formats=formats())
    assert result.info.format == "plain"
    assert result.info.algorithms["md5"]["count"] == 5
    assert result.info.algorithms["sha1"]["count"] == 2
    hits, _ = lookup_hex(library.open("p"), values)
    assert len(hits) == 7


def test_lookup_agrees_with_hfind(tmp_path: Path) -> None:
    if shutil.which("hfind") is None:
        pytest.skip("The Sleuth Kit's hfind is not installed")
    present = synthetic(300)
    source = tmp_path / "set.md5"
    source.write_text("".join(f"{h}  /x/file{i}\n" for i, h in enumerate(present)))
    subprocess.run(["hfind", "-i", "md5sum", str(source)], check=True, capture_output=True)
    queries = present[::7] + synthetic(40, salt="absent")
    query_file = tmp_path / "q.txt"
    query_file.write_text("\n".join(queries) + "\n")
    out = subprocess.run(
        ["hfind", "-f", str(query_file), str(source)], capture_output=True, text=True, check=True
    ).stdout
    hfind_found = {
        line.split("\t")[0].lower()
        for line in out.splitlines()
        if line and "Hash Not Found" not in line
    }
    library = Library(tmp_path / "lib")
    library.import_set(source, "s", "known-good", formats=formats())
    hits, _ = lookup_hex(library.open("s"), queries)
    assert {h[0] for h in hits} == hfind_found == set(present[::7])


def test_a_damaged_set_is_reported_and_can_be_removed(tmp_path: Path) -> None:
    source = tmp_path / "set.json"
    source.write_text(json.dumps([{"md5": h} for h in synthetic(3)]))
    library = Library(tmp_path / "lib")
    library.import_set(source, "s", "known-bad", ListFormat())
    (library.path / "s" / "manifest.json").write_text("{not json")
    with pytest.raises(HashSetError, match="damaged"):
        library.sets()
    assert library.remove("s") == "s (damaged)"
    assert library.sets() == []


@pytest.mark.parametrize(
    ("content", "entries", "malformed"),
    [
        (b"d41d8cd98f00b204e9800998ecf8427e  x", 1, 0),  # no final newline
        (b"d41d8cd98f00b204e9800998ecf8427e  x\nabc", 1, 1),  # short last line
        (b"\xef\xbb\xbfd41d8cd98f00b204e9800998ecf8427e *bin\r\n", 1, 0),  # BOM, CRLF, binary
        (b"d41d8cd98f00b204e9800998ecf8427e\n", 1, 0),  # plain, one line
    ],
)
def test_text_list_edges(tmp_path: Path, content: bytes, entries: int, malformed: int) -> None:
    source = tmp_path / "list.txt"
    source.write_bytes(content)
    result = Library(tmp_path / "lib").import_set(source, "s", "known-good", formats=formats())
    assert (result.info.entries, result.info.malformed) == (entries, malformed)
    hits, _ = lookup_hex(Library(tmp_path / "lib").open("s"), ["d41d8cd98f00b204e9800998ecf8427e"])
    assert len(hits) == 1


@pytest.mark.parametrize(
    ("name", "uniform"),
    [("md5 lines", True), ("sha256 lines", True), ("upper case", True), ("crlf", False),
     ("a blank inside", False), ("not hex", False), ("no final newline", False),
     ("mixed widths", False)],
)  # fmt: skip
def test_equal_width_shortcut_agrees_with_the_line_by_line_reading(
    tmp_path: Path, name: str, uniform: bool
) -> None:
    """The one-call decoding of equal-width files answers exactly as the general reader."""
    md5s, sha256s = synthetic(40), synthetic(30, "sha256")
    source = tmp_path / "set.txt"
    source.write_text("".join(f"{h}\n" for h in md5s[::2] + sha256s[::2]))
    library = Library(tmp_path / "lib")
    library.import_set(source, "s", "known-good", formats=formats())
    index = library.open("s")
    data = {
        "md5 lines": "".join(f"{h}\n" for h in md5s),
        "sha256 lines": "".join(f"{h}\n" for h in sha256s),
        "upper case": "".join(f"{h.upper()}\n" for h in md5s),
        "crlf": "".join(f"{h}\r\n" for h in md5s),
        "a blank inside": "".join(f"{h}\n" for h in md5s[:5]) + md5s[5][:31] + " \n",
        "not hex": "".join(f"{h}\n" for h in md5s[:5]) + "z" * 32 + "\n",
        "no final newline": "\n".join(md5s),
        "mixed widths": "".join(f"{a}\n{b}\n" for a, b in zip(md5s, sha256s, strict=False)),
    }[name].encode()
    assert (_uniform_lines(data) is not None) is uniform
    general = _split_lines(data)
    hits = lookup_lines(index, data)
    assert hits.given == general[1]
    found = {
        data[a : a + w].decode().lower() for a, w in zip(hits.starts, hits.widths, strict=True)
    }
    expected = {h for h in md5s[::2] + sha256s[::2] if h in data.decode().lower()}
    if name == "a blank inside":
        expected.discard(md5s[5])
    assert found == expected and len(hits.lines) == len(expected)


def test_windows_equal_gather_at_the_edges() -> None:
    """Row windows over a source, compacted by their mask, are the byte ranges joined."""
    rng = np.random.default_rng(5)
    for size in (0, 1, 7, 100, 4096):
        source = rng.integers(0, 256, size, dtype=np.uint8)
        starts = rng.integers(0, max(size, 1), 200)
        lengths = np.minimum(rng.integers(0, 40, 200), size - np.minimum(starts, size))
        result = windows(source, starts, lengths)
        assert result is not None
        matrix, mask = result
        raw = source.tobytes()
        assert matrix[mask].tobytes() == b"".join(
            raw[a : a + n] for a, n in zip(starts.tolist(), lengths.tolist(), strict=True)
        )
    assert windows(np.zeros(10, np.uint8), np.zeros(2, np.int64), np.array([1, 1 << 25])) is None


def test_entry_records_are_read_without_keeping_a_map(tmp_path: Path) -> None:
    """A scan's parent reads its hits' names batch after batch; the column files are read
    with pread, so no map of them stays in the process (maps kept open, or made per batch,
    left every page a hit touched resident: memory grew with the number of hits)."""
    present = synthetic(2000)
    source = tmp_path / "set.md5"
    source.write_text("".join(f"{h}  /x/dir{i % 7}/file{i}.bin\n" for i, h in enumerate(present)))
    library = Library(tmp_path / "lib")
    library.import_set(source, "s", "known-good", formats=formats())
    index = library.open("s")
    queries = np.frombuffer(bytes.fromhex("".join(present[::3])), "S16")
    positions, entries = index.lookup("md5", queries)
    names, sizes, metas = index.columns(entries.tolist())
    by_digest = {h: f"/x/dir{i % 7}/file{i}.bin".encode() for i, h in enumerate(present)}
    assert len(names) == len(present[::3])
    for q, name in zip(positions.tolist(), names, strict=True):
        assert name == by_digest[present[::3][q]]
    assert sizes == [None] * len(names) and metas == [None] * len(names)
    assert index.columns([]) == ([], [], [])
    maps = Path("/proc/self/maps").read_text()
    assert "names.bin" not in maps and "names.spans" not in maps


def test_small_lookup_tables_stay_mapped_within_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Search tables (prefixes, digests; not the entries, read for hits only) are kept
    mapped between lookups while the kept ones stay within KEEP_MAPPED bytes in all
    (mapping them again for each lookup touched every page
    afresh); beyond it, a table is mapped for one lookup; the answers are the same, and
    an index that goes away gives its share back."""
    present = synthetic(3000)
    source = tmp_path / "set.md5"
    source.write_text("".join(f"{h}  /f{i}\n" for i, h in enumerate(present)))
    library = Library(tmp_path / "lib")
    library.import_set(source, "s", "known-good", formats=formats())
    queries = np.frombuffer(bytes.fromhex("".join(present[::5]) + "00" * 16 * 50), "S16")
    sizes = {p.name: p.stat().st_size for p in Path(library.open("s").folder).iterdir()}
    tables = sizes["md5.prefix"] + sizes["md5.digests"]
    answers = []
    gc.collect()
    held = hashdb._KEPT.used  # by indexes of other tests still open
    for budget, kept in ((1 << 30, {"md5.prefix", "md5.digests"}),  # entries: per lookup
                         (sizes["md5.prefix"], {"md5.prefix"}), (0, set())):  # fmt: skip
        monkeypatch.setattr(hashdb, "KEEP_MAPPED", held + budget)
        index = library.open("s")
        for _round in range(2):
            positions, entries = index.lookup("md5", queries)
            answers.append((positions.tolist(), entries.tolist()))
        assert set(index._kept) == kept
        assert hashdb._KEPT.used - held == sum(sizes[name] for name in kept) <= budget
        del index
        gc.collect()
        assert hashdb._KEPT.used == held
    assert all(a == answers[0] for a in answers) and len(answers[0][0]) == 600
    assert tables > sizes["md5.prefix"]


def test_hex_to_array_keeps_only_clean_full_width_values() -> None:
    """Every value clean and full width (one joined decode), or some not: the same digests
    and positions as decoding each value alone, the bad ones left out."""
    good = [hashlib.md5(str(i).encode()).hexdigest() for i in range(6)]
    cases = [
        good,
        [*good[:2], "", *good[3:]],  # a stream without a digest
        [*good[:2], "zz" * 16, *good[3:]],  # not hex
        [*good[:2], good[2][:30] + " 0", *good[3:]],  # a blank inside: fromhex would skip it
        [*good[:2], good[2][:30] + "  ", *good[3:]],  # two: a value one byte short
        [*good[:2], good[2][:-2], good[3] + "ab", *good[4:]],  # short and long: same total
    ]
    for values in cases:
        queries, valid = hex_to_array(values, "md5")
        expected = [i for i, v in enumerate(values) if v in good]
        assert valid.tolist() == expected, values
        assert [bytes(q).hex() for q in queries] == [values[i] for i in expected]
