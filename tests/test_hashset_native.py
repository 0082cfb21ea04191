"""The compiled hash-set helpers (examkit/_hashset_native.c): the lookup (through
examkit.fastlookup) against the numpy
path, byte for byte, on sets and query files made to exercise every rule: case, blanks,
CR/LF, bad hex, odd widths, three algorithms, digests listed many times, hidden and shown
names, names that must pass the display gate (the helper declines them)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from examkit import fastlookup, native
from examkit.cli import lookup_lean, lookup_output
from examkit.cli.app import main
from examkit.errors import UsageError
from examkit.hashset_folders import default_dir

pytestmark = pytest.mark.skipif(
    native.helper() is None, reason="examkit._hashset_native was not built (no C compiler)"
)


def _import(capsys: pytest.CaptureFixture[str], path: Path, name: str, kind: str) -> Path:
    code = main(["hashset", "import", str(path), "-n", name, "-k", kind])
    err = capsys.readouterr().err
    assert code == 0, err
    return default_dir() / name


def _one_entry_set(capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str) -> Path:
    """A known-good md5sum set called ``name`` holding MD5(name) as ``/name``."""
    source = tmp_path / f"{name}.md5"
    source.write_text(f"{hashlib.md5(name.encode()).hexdigest()}  /{name}\n")
    return _import(capsys, source, name, "known-good")


def _both(capsys: pytest.CaptureFixture[str], folder: Path, data: bytes, show: bool
          ) -> tuple[tuple[int, str, str], tuple[int, str, str], bool]:  # fmt: skip
    """(compiled answer, numpy answer, whether the helper answered): code, out, err."""
    compiled = fastlookup.compiled_tsv(folder, data, show) is not None
    queries = folder.parent.parent / "queries.txt"
    queries.write_bytes(data)
    capsys.readouterr()
    code = lookup_lean.run_lookup(folder.name, [], queries, show, folder.parent, False)
    first = (code, *capsys.readouterr())
    code = lookup_output.lookup_general(folder, data, show, False)
    second = (code, *capsys.readouterr())
    return first, second, compiled


def _queries(rng: random.Random, known: list[str], count: int) -> bytes:
    """Lines of every kind: known digests (any case, blanks around, CRLF), unknown ones,
    bad hex, wrong widths, inner blanks, blank and whitespace-only lines."""
    lines = []
    for _ in range(count):
        pick = rng.random()
        if pick < 0.45:
            line = rng.choice(known)
            line = line.upper() if rng.random() < 0.3 else line
        elif pick < 0.6:
            line = f"{rng.getrandbits(256):064x}"[-rng.choice([32, 40, 64]) :]
        elif pick < 0.67:
            line = rng.choice(known)[:-1] + "g"
        elif pick < 0.74:
            line = rng.choice(known)[: rng.randrange(1, 70)]
        elif pick < 0.78:
            k = rng.choice(known)
            line = k[:10] + " " + k[10:]
        elif pick < 0.84:
            line = ""
        elif pick < 0.88:
            line = rng.choice([" ", "\t", " \x0b\x0c "])
        else:
            line = "not a hash at all"
        if rng.random() < 0.15:
            line = rng.choice([" ", "\t", "  "]) + line + rng.choice(["", " ", "\t"])
        lines.append(line + ("\r" if rng.random() < 0.1 else ""))
    text = "\n".join(lines) + ("\n" if rng.random() < 0.5 else "")
    return text.encode()


@pytest.mark.parametrize("kind", ["known-good", "known-bad"])
def test_named_md5sum_set_gives_the_numpy_answer(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str
) -> None:
    rng = random.Random(kind)
    md5s = [hashlib.md5(b"%d" % i).hexdigest() for i in range(3000)]
    dup = md5s[7]
    lines = [f"{m}  /set/{'d/' * (i % 5)}file {i}.bin" for i, m in enumerate(md5s)]
    lines += [f"{dup}  /copies/{i}" for i in range(20)]  # one digest 21 times: 16 are shown
    lines += [f"{md5s[9]} *binary-mode-{i}" for i in range(3)]
    source = tmp_path / "set.md5"
    source.write_text("\n".join(lines) + "\n")
    folder = _import(capsys, source, "s", kind)
    for round_ in range(6):
        data = _queries(rng, [*md5s[:400], dup], 2500 + round_)
        for show in (False, True):
            compiled, numpy_path, used = _both(capsys, folder, data, show)
            assert used  # plain names: the helper answered
            assert compiled == numpy_path
    out = _both(capsys, folder, (dup + "\n").encode(), True)[0][1]
    assert out.count("\n") == 16 and "/copies/" in out  # MAX_ENTRIES_PER_DIGEST, entry order
    hidden = _both(capsys, folder, (md5s[3] + "\n").encode(), False)[0][1]
    assert ("<withheld>" in hidden) == (kind == "known-bad")


def test_three_algorithms_and_a_plain_list(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rng = random.Random(3)
    blobs = [b"%d" % i for i in range(500)]
    digests = [(hashlib.md5(b).hexdigest(), hashlib.sha1(b).hexdigest(),
                hashlib.sha256(b).hexdigest()) for b in blobs]  # fmt: skip
    deep = tmp_path / "set.hashdeep"
    deep.write_text(
        "%%%% HASHDEEP-1.0\n%%%% size,md5,sha1,sha256,filename\n"
        + "".join(f"{i},{m},{s1},{s2},/f/{i}\n" for i, (m, s1, s2) in enumerate(digests))
    )
    plain = tmp_path / "list.txt"
    plain.write_text("".join(s2 + "\n" for _m, _s1, s2 in digests[::2]))
    known = [d for triple in digests for d in triple]
    for folder, expect_helper in (
        (_import(capsys, plain, "plain", "known-bad"), True),  # no names at all
        (_import(capsys, deep, "deep", "known-good"), False),  # sizes: the numpy path prints
    ):
        for round_ in range(3):
            data = _queries(rng, known, 1500 + round_)
            compiled, numpy_path, used = _both(capsys, folder, data, False)
            assert used == expect_helper
            assert compiled == numpy_path


def test_names_to_escape_are_left_to_the_display_gate(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    md5s = [hashlib.md5(b"x%d" % i).hexdigest() for i in range(40)]
    names = ["plain", "tab\there", "esc\x1b[31mred", "back\\slash", "caf\u00e9", "bidi\u202e"]
    source = tmp_path / "odd.md5"
    source.write_bytes(
        "".join(f"{m}  {names[i % len(names)]}{i}\n" for i, m in enumerate(md5s)).encode()
    )
    folder = _import(capsys, source, "odd", "known-good")
    only_plain = "".join(m + "\n" for i, m in enumerate(md5s) if i % len(names) == 0).encode()
    compiled, numpy_path, used = _both(capsys, folder, only_plain, False)
    assert used and compiled == numpy_path
    for odd in range(1, len(names)):  # each kind of name to escape alone, with a plain one
        data = f"{md5s[0]}\n{md5s[odd]}\n".encode()
        compiled, numpy_path, used = _both(capsys, folder, data, False)
        assert not used and compiled == numpy_path, names[odd]
    every = ("\n".join(md5s) + "\n").encode()
    compiled, numpy_path, used = _both(capsys, folder, every, False)
    assert not used  # a name to escape: the numpy path and the display gate answer
    assert compiled == numpy_path and "\x1b" not in compiled[1] and "\\x1b" in compiled[1]
    source.write_bytes(source.read_bytes() + b"# the same set again, as known-bad\n")
    bad = _import(capsys, source, "odd-bad", "known-bad")  # hidden: never looked at
    compiled, numpy_path, used = _both(capsys, bad, every, False)
    assert used and compiled == numpy_path and "esc" not in compiled[1]


def test_errors_are_those_of_the_numpy_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = _one_entry_set(capsys, tmp_path, "one")
    with pytest.raises(UsageError, match="no hashes given"):
        lookup_lean.run_lookup("one", [" ", ""], None, False, folder.parent, False)
    with pytest.raises(UsageError, match="no hash set named"):
        lookup_lean.run_lookup("none", ["x"], None, False, folder.parent, False)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    code = main(["hashset", "lookup", "one", "-f", str(empty)])
    assert code == 2 and "no hashes given" in capsys.readouterr().err


def test_a_plain_lookup_process_never_imports_numpy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """What the helper is for: the process that answers does not start numpy."""
    import subprocess
    import sys

    md5 = hashlib.md5(b"n").hexdigest()
    folder = _one_entry_set(capsys, tmp_path, "n")
    probe = (
        "import sys; from examkit.cli.entry import main; code = main(sys.argv[1:]);"
        " sys.stderr.write('numpy imported: %s' % ('numpy' in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, "hashset", "lookup", "n", md5, "--hashset-dir",
         str(folder.parent)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout == f"{md5}\tmd5\t/n\t\t\n", done.stderr
    assert "numpy imported: False" in done.stderr


def test_compact_keeps_exactly_the_spans_bytes() -> None:
    import numpy as np

    module = native.helper()
    assert module is not None
    rng = random.Random(11)
    blob = bytes(rng.randrange(256) for _ in range(5000))
    spans = []
    for _ in range(300):
        a = rng.randrange(0, 5000)
        spans.append((a, min(5000, a + rng.choice([0, 0, 1, 7, 40, 300]))))
    spans.append((10, 3))  # an end before its start: no name
    pairs = np.array(spans, "<u8")
    names, places = module.compact(blob, pairs)
    got = np.frombuffer(places, "<u8").reshape(-1, 2)
    for (a, b), (x, y) in zip(spans, got.tolist(), strict=True):
        assert names[x:y] == (blob[a:b] if b > a else b"")
    assert len(names) == sum(max(0, b - a) for a, b in spans)
    with pytest.raises(ValueError, match="past the blob"):
        module.compact(b"abc", np.array([[1, 9]], "<u8"))


def test_an_md5sum_import_keeps_the_names_and_not_the_source_around_them(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from examkit.hashdb import HashSetIndex

    md5s = [hashlib.md5(b"c%d" % i).hexdigest() for i in range(4000)]
    names = [f"/dir{i % 7}/name with spaces {i}.bin" for i in range(4000)]
    source = tmp_path / "set.md5"
    source.write_text("".join(f"{m}  {n}\n" for m, n in zip(md5s, names, strict=True)))
    compact = _import(capsys, source, "compact", "known-good")
    monkeypatch.setattr(native, "helper", lambda: None)  # as installed without a C compiler
    source.write_text(source.read_text() + "\n")  # another file: imported again
    plain = _import(capsys, source, "plain", "known-good")
    size = (compact / "names.bin").stat().st_size
    assert size == sum(len(n.encode()) for n in names)
    assert (plain / "names.bin").stat().st_size == source.stat().st_size  # the whole source
    everything = list(range(4000))
    assert HashSetIndex(compact).columns(everything) == HashSetIndex(plain).columns(everything)
    assert HashSetIndex(compact).columns(everything)[0] == [n.encode() for n in names]


def test_a_damaged_set_is_left_to_the_numpy_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = _one_entry_set(capsys, tmp_path, "d")
    data = (hashlib.md5(b"d").hexdigest() + "\n").encode()
    assert fastlookup.compiled_tsv(folder, data, False) is not None
    (folder / "names.spans").write_bytes(b"\x00" * 8 + b"\xff" * 8)  # past the names file
    assert fastlookup.compiled_tsv(folder, data, False) is None
    (folder / "md5.entries").unlink()  # a file missing: declined too, never raised
    assert fastlookup.compiled_tsv(folder, data, False) is None
    (folder / "manifest.json").write_text("{not json")
    assert fastlookup.compiled_tsv(folder, data, False) is None


def test_text_pieces_end_at_line_ends_whatever_the_chunk_edges(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The reused read buffers of the text loaders: with tiny chunks, lines that cross
    chunk edges, a line longer than several chunks and a BOM, the pieces held at once
    (as many as the loader holds) are the file's lines, each whole, in order."""
    from examkit_plugins.hashsets import text

    monkeypatch.setattr(text, "CHUNK", 64)
    monkeypatch.setattr(text, "LINE_SLACK", 16)
    rng = random.Random(5)
    lines = [b"x" * rng.choice([0, 1, 30, 63, 64, 65, 100]) for _ in range(300)]
    lines[1] = lines[150] = b"y" * 200  # more than three chunks, more than the slack
    path = tmp_path / "lines.txt"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n")
    held: list[memoryview] = []
    seen: list[bytes] = []
    with open(path, "rb") as fh:
        for piece in text._chunks(fh, 4):
            held.append(piece)
            assert bytes(piece).endswith(b"\n")
            if len(held) > 3:  # still intact when the reader holds three
                seen.append(bytes(held.pop(0)))
    seen += [bytes(p) for p in held]
    assert b"".join(seen) == b"\n".join(lines) + b"\n"


def test_index_find_gives_the_hits_of_the_numpy_search(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``HashSetIndex.find`` (a scan's exact matching) against ``lookup`` (numpy) and
    against the set's own lines: every algorithm, a digest listed 21 times (its first 16
    entries), queries repeated, unsorted, unknown."""
    import numpy as np

    from examkit.hashdb import HashSetIndex, digest_dtype, hex_to_raw

    rng = random.Random(11)
    blobs = [b"f%d" % i for i in range(2000)]
    lines = [f"{i},{hashlib.md5(b).hexdigest()},{hashlib.sha1(b).hexdigest()},"
             f"{hashlib.sha256(b).hexdigest()},/f/{i}" for i, b in enumerate(blobs)]  # fmt: skip
    lines += [lines[5].rsplit(",", 1)[0] + f",/copy/{i}" for i in range(20)]  # 21 entries
    source = tmp_path / "set.hashdeep"
    source.write_text("%%%% HASHDEEP-1.0\n%%%% size,md5,sha1,sha256,filename\n"
                      + "\n".join(lines) + "\n")  # fmt: skip
    index = HashSetIndex(_import(capsys, source, "deep", "known-good"))
    for column, algorithm in enumerate(("md5", "sha1", "sha256"), start=1):
        listed: dict[str, list[int]] = {}
        for entry, line in enumerate(lines):
            listed.setdefault(line.split(",")[column], []).append(entry)
        known = list(listed)
        values = [rng.choice(known) if rng.random() < 0.6 else f"{rng.getrandbits(256):064x}"
                  [: 2 * len(bytes.fromhex(known[0]))] for _ in range(700)]  # fmt: skip
        values += [known[5]] * 3  # the digest listed 21 times, asked for three times
        rng.shuffle(values)
        raw, valid = hex_to_raw(values, algorithm)
        assert valid == list(range(len(values)))
        found = index.find(algorithm, raw)
        q_pos, entries = index.lookup(algorithm, np.frombuffer(raw, digest_dtype(algorithm)))
        assert found == sorted(zip(q_pos.tolist(), entries.tolist(), strict=True))
        expected = [(q, e) for q, v in enumerate(values) for e in listed.get(v, [])[:16]]
        assert found == expected
        assert sum(1 for q, _ in found if values[q] == known[5]) == 3 * 16
    assert index.find("md5", b"") == []
