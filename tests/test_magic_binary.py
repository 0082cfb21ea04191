"""The binary copies of libmagic's database give the full database's answers.

The oracle is libmagic itself: a plain python-magic handle on the system's database.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import magic
import pytest

from examkit import magic_binary, magic_subset
from examkit.hashing import HEAD_SIZE
from examkit.magic_subset import ANYWHERE, AT_OFFSET, LINE_START, Literal
from tests.conftest import compile_magic

native = pytest.importorskip("examkit._magic_native", reason="examkit._magic_native not built")


@pytest.fixture(scope="module")
def loaded() -> magic_binary.BinaryMagic:
    reason = magic_subset.unavailable()
    if reason is not None:
        pytest.skip(f"binary copies not usable here: {reason}")
    typer, why = magic_binary.load()
    assert typer is not None, why  # built here, it must pass its own sample check
    return typer


@pytest.fixture(scope="module")
def every_copy(loaded: magic_binary.BinaryMagic) -> magic_binary.BinaryMagic:
    """A typer that makes a copy for every set of rules it meets."""
    return magic_binary.BinaryMagic(loaded.subset, native.possible, native.matching, 1, 10**6)


@pytest.fixture(scope="module")
def full() -> magic.Magic:
    return magic.Magic(mime=True)


def _machine_binaries(limit: int) -> list[bytes]:
    """Heads of this machine's own non-text files (programs, libraries, images, archives,
    compiled Python, fonts, locales), in a fixed order."""
    roots = ["/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/share", "/usr/lib/python3",
             "/usr/lib/python3.11", "/var/cache", "/usr/lib/locale"]  # fmt: skip
    heads: list[bytes] = []
    seen: set[bytes] = set()

    def files() -> Iterator[Path]:
        for root in roots:
            for folder, dirs, names in os.walk(root):
                dirs.sort()
                for name in sorted(names):
                    yield Path(folder, name)

    for path in files():
        if path.is_symlink() or not path.is_file():
            continue
        try:
            with path.open("rb") as fh:
                head = fh.read(HEAD_SIZE)
        except OSError:
            continue
        key = head[:64]
        if head and not magic_subset.is_text(head) and key not in seen:
            seen.add(key)  # one head per kind of start: many more kinds than copies of one
            heads.append(head)
            if len(heads) >= limit:
                break
    return heads


def _crafted(count: int) -> list[bytes]:
    rng = random.Random(41)
    out = magic_binary.samples()
    for _ in range(count):
        size = rng.choice([1, 2, 7, 64, 512, HEAD_SIZE])
        out.append(bytes(rng.randrange(256) for _ in range(size)))
    return out


def test_same_answers_as_the_full_database(
    every_copy: magic_binary.BinaryMagic, full: magic.Magic
) -> None:
    heads = _machine_binaries(3000) + _crafted(300)
    typed = 0
    for head in heads:
        copy = every_copy.handle(head)
        if copy is not None:
            typed += 1
            assert copy.from_buffer(head) == full.from_buffer(head), head[:64]
    assert typed >= 1500
    assert len(every_copy.copies) >= 50  # many different sets of rules were met


def _holding(clause: tuple[Literal, ...], rng: random.Random) -> bytes:
    """A non-text head with a clause's literals where it wants them (NUL-filled)."""
    at = [lit for lit in clause if lit.mode == AT_OFFSET]
    size = max([lit.offset + len(lit.data) for lit in at] + [64])
    head = bytearray(b"\x00" * size)
    for lit in at:
        head[lit.offset : lit.offset + len(lit.data)] = lit.data
    for lit in clause:
        if lit.mode == ANYWHERE:
            head += b"\x00" + lit.data + b"\x00"
        elif lit.mode == LINE_START:
            head += b"\n" + lit.data + b"\x00"
    return bytes(head) + bytes(rng.randrange(256) for _ in range(32)) + b"\x00"


def test_each_rule_left_out_is_in_the_key_of_a_head_holding_it(
    loaded: magic_binary.BinaryMagic, every_copy: magic_binary.BinaryMagic, full: magic.Magic
) -> None:
    """For every candidate rule, a head built from its literals (upper-case letters as
    libmagic compares them are not known: as stored) has it in its key, and its copy
    (which keeps the rule) answers as the full database."""
    rng = random.Random(5)
    candidates = loaded.subset.candidates
    sampled = range(0, len(candidates), 3)  # a copy each: a third of them, in 5 s
    typed = 0
    for index in sampled:
        condition = candidates[index]
        head = _holding(condition[0], rng)
        key = every_copy.key(head)
        if key is None:
            continue  # a guard may match it: the full database types it
        assert index in key, condition[0]
        if magic_subset.is_text(head):
            continue
        copy = every_copy.handle(head)
        assert copy is not None
        typed += 1
        assert copy.from_buffer(head) == full.from_buffer(head), head[:64]
    assert typed >= len(sampled) // 2


def test_rules_one_byte_meets_are_in_every_copy(
    loaded: magic_binary.BinaryMagic, full: magic.Magic
) -> None:
    """A rule one given byte satisfies is no candidate (kept in every copy): random heads
    differing only in their first byte fall into a few sets, not one per byte met."""
    for condition in loaded.subset.candidates:
        assert all(sum(len(lit.data) for lit in clause) > 1 for clause in condition)
    rng = random.Random(3)
    tail = bytes(rng.randrange(256) for _ in range(2000))
    heads = [bytes([first]) + tail for first in range(256)]
    keys = {loaded.key(head) for head in heads}
    assert len(keys) <= 10  # 28 when such rules were candidates
    every = magic_binary.BinaryMagic(loaded.subset, native.possible, native.matching, 1, 64)
    for head in heads:
        copy = every.handle(head)
        if copy is not None:
            assert copy.from_buffer(head) == full.from_buffer(head), head[:8]


_NEVER_RULES = (  # the continuation needs other bytes where the top-level test read G9B
    "0\tstring/b\tG9B\n>1\tuleshort\t11\tnever printed\n!:mime\tapplication/x-never\n"
    "0\tstring/b\tG9A\n>3\tuleshort\t11\tprinted\n!:mime\tapplication/x-printed\n"
)


def test_a_rule_that_can_never_match_is_in_no_copy(tmp_path: Path) -> None:
    compiled = compile_magic(tmp_path, "never", _NEVER_RULES).read_bytes()
    entries, n0, _n1 = magic_subset.parse(compiled)
    conditions = {entries[i].value[:3]: magic_subset.rule_condition(entries, i, j)
                  for i, j in magic_subset.rule_groups(entries, 0, n0)}  # fmt: skip
    assert conditions[b"G9B"] == ()
    assert conditions[b"G9A"] == (
        (Literal(AT_OFFSET, 0, b"g9a"), Literal(AT_OFFSET, 3, b"\x0b\x00")),
    )
    subset = magic_binary.build(compiled)
    assert len(subset.groups) == 1 and len(subset.candidates) == 1
    full = magic.Magic(mime=True, magic_file=str(tmp_path / "never.mgc"))
    typer = magic_binary.BinaryMagic(subset, native.possible, native.matching, 1)
    for head in (b"G9B\x0b\x00\x00\x01", b"G9A\x0b\x00\x00\x01", b"G9A\x0c\x00\x00\x01"):
        copy = typer.handle(head)
        assert copy is not None and copy.from_buffer(head) == full.from_buffer(head)
    assert full.from_buffer(b"G9A\x0b\x00\x00\x01") == "application/x-printed"


def test_compiled_matching_equals_the_python_one(loaded: magic_binary.BinaryMagic) -> None:
    candidates = loaded.subset.candidates
    rng = random.Random(9)
    heads = _machine_binaries(300) + _crafted(100)
    heads += [_holding(c[0], rng) for c in candidates[::11]]
    for head in heads:
        expected = [i for i, c in enumerate(candidates) if magic_subset.possible([c], head)]
        assert native.matching(loaded.program, head) == expected


def test_guarded_heads_go_to_the_full_database(loaded: magic_binary.BinaryMagic) -> None:
    jpeg = magic_binary.samples()[0]  # the jpeg named rule reaches an indirect test
    assert loaded.key(jpeg) is None and loaded.handle(jpeg) is None
    assert loaded.handle(b"plain ASCII text\n") is None  # the text subset's heads
    assert loaded.handle(b"") is None


def test_copies_are_bounded(loaded: magic_binary.BinaryMagic) -> None:
    bounded = magic_binary.BinaryMagic(loaded.subset, native.possible, native.matching, 2, 3)
    for head in _machine_binaries(800):
        copy = bounded.handle(head)
        if copy is not None:
            held = next(k for k, h in bounded.copies.items() if h is copy)
            assert held == bounded.key(head)  # only the copy made for the head's own set
    assert len(bounded.copies) == 3


def test_copies_keep_only_the_named_rules_they_use(loaded: magic_binary.BinaryMagic) -> None:
    subset = loaded.subset
    empty = subset.database(())
    every = subset.database(range(len(subset.candidates)))
    _entries, n0, n1 = magic_subset.parse(every)
    assert n0 == sum(g.end - g.start for g in subset.groups) // magic_subset.RECORD
    assert len(empty) < len(every)
    assert magic_subset.parse(empty)[2] < n1  # fewer named rules without the candidates


def _compile(folder: Path, name: str, source: str) -> bytes:
    return compile_magic(folder, name, source).read_bytes()


def test_an_indirect_rule_is_a_guard_and_a_text_one_refuses(tmp_path: Path) -> None:
    binary = _compile(tmp_path, "bin", "0\tbelong\t0x00515a00\tcontainer\n>4\tindirect\tx\n"
                      "0\tstring\t\\x00MNOPQ\ttarget\n!:mime\tapplication/x-target\n")  # fmt: skip
    subset = magic_binary.build(binary)
    assert len(subset.guards) == 1 and len(subset.candidates) == 1
    typer = magic_binary.BinaryMagic(subset, native.possible, native.matching, 1, 8)
    full = magic.Magic(mime=True, magic_file=str(tmp_path / "bin.mgc"))
    head = b"\x00QZ\x00\x00MNOPQ\x00"
    assert full.from_buffer(head) == "application/x-target"  # found from offset 4
    assert typer.handle(head) is None  # the guard may match: the full database
    text = _compile(tmp_path, "txt", "0\tstring/t\tQZ\tqz\n>2\tindirect\tx\n")  # a text test
    with pytest.raises(ValueError, match="indirect"):
        magic_binary.build(text)


def test_which_heads_libmagic_tries_only_in_its_binary_pass() -> None:
    """libmagic's text check drops trailing NULs, then tries ASCII, UTF-8 (with or without
    its mark), UTF-7, UTF-32 and UTF-16 (with their marks), Latin-1, extended ASCII and
    EBCDIC (encoding.c): a NUL before the last non-NUL byte is text in none of them."""
    assert magic_binary.binary_pass_only(b"\x7fELF\x02\x01\x01\x00rest")
    for byte in magic_binary.NEVER_TEXT:
        assert magic_binary.binary_pass_only(b"text " + bytes([byte]) + b" text")
    for byte in (4, 5, 6, 0x14, 0x1A, 0x7F, 0x80, 0xFF):  # text once read as EBCDIC, or 8-bit
        assert not magic_binary.binary_pass_only(b"text " + bytes([byte]) + b" text")


def test_heads_said_to_skip_the_text_pass_are_binary_to_libmagic() -> None:
    """The oracle is libmagic's own encoding check (``--mime-encoding``): every head
    ``binary_pass_only`` accepts is ``binary`` to it, in whatever encoding the rest of the
    head would read as text."""
    encoding = magic.Magic(mime_encoding=True)
    rng = random.Random(41)
    texts = [b"plain text\n", "caf\u00e9 cr\u00e8me\n".encode("latin-1"),
             "na\u00efve \u2014 text\n".encode(), "EBCDIC text".encode("cp500"),
             "wide text".encode("utf-16-le"), bytes(range(0x80, 0xA0))]  # fmt: skip
    heads = [t + bytes([b]) + t for t in texts for b in magic_binary.NEVER_TEXT]
    heads += [t + b"\x00" * n for t in texts for n in (1, 2, 7)]  # trailing NULs only
    heads += [rng.randbytes(rng.randrange(1, 600)) for _ in range(400)]
    accepted = 0
    for head in heads:
        if magic_binary.binary_pass_only(head):
            accepted += 1
            assert encoding.from_buffer(head) == "binary", head[:40]
    assert accepted > 400
    assert not magic_binary.binary_pass_only(b"plain text")
    assert not magic_binary.binary_pass_only(b"text padded with NULs\x00\x00\x00")
    assert not magic_binary.binary_pass_only(bytes(64))
    for mark in (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"+/v8"):
        assert not magic_binary.binary_pass_only(mark + b"a\x00b\x00")


_BOTH_PASSES = "0\tsearch/200/bt\tMNOPQ\ttarget\n!:mime\tapplication/x-target\n"


def test_a_rule_of_both_passes_is_left_out_only_where_the_text_pass_cannot_see_it(
    tmp_path: Path,
) -> None:
    """A rule tried by both passes (``/bt``) is a candidate: a head that only goes through
    the binary pass and lacks its literal gets a copy without it; a head the text pass
    reads (here UTF-16 with its mark, where the converted text holds the literal and the
    raw bytes do not) keeps it, as the full database finds it there."""
    mgc = _compile(tmp_path, "both", _BOTH_PASSES)
    subset = magic_binary.build(mgc)
    assert len(subset.candidates) == 1 and subset.both == frozenset({0})
    typer = magic_binary.BinaryMagic(subset, native.possible, native.matching, 1, 8)
    full = magic.Magic(mime=True, magic_file=str(tmp_path / "both.mgc"))
    without = magic_subset.open_copy(subset.database(()))
    binary = b"\x00\x01\x02 no literal here \x00\x03"
    assert typer.key(binary) == ()
    assert typer.handle(binary).from_buffer(binary) == full.from_buffer(binary)
    found = b"\x00\x01MNOPQ\x00"
    assert typer.key(found) == (0,)
    assert typer.handle(found).from_buffer(found) == "application/x-target"
    utf16 = b"\xff\xfe" + "some MNOPQ text\n".encode("utf-16-le")
    assert full.from_buffer(utf16) == "application/x-target"  # through the text pass
    assert without.from_buffer(utf16) != "application/x-target"  # the copy alone misses it
    assert typer.key(utf16) == (0,)
    assert typer.handle(utf16).from_buffer(utf16) == "application/x-target"


def test_heads_of_unknown_binary_leave_out_the_svg_search(
    loaded: magic_binary.BinaryMagic, full: magic.Magic
) -> None:
    """libmagic 5.44 has one rule of both passes, SVG's ``search/4096/cWbt``: a case-folding
    search through 4 KiB, 60% of its time on a head it does not recognise. Random heads with
    a NUL leave it out and are typed alike; one holding the doctype keeps it."""
    conditions = loaded.subset.candidates
    svg = [i for i in loaded.subset.both
           if any(lit.data == b"<!doctype" for c in conditions[i] for lit in c)]  # fmt: skip
    if b"<!doctype svg" not in loaded.subset.mgc:
        pytest.skip("this libmagic's database has no SVG doctype rule")
    assert len(svg) == 1  # a candidate of both passes
    rng = random.Random(29)
    for _ in range(200):
        head = bytes(rng.randrange(256) for _ in range(rng.randrange(64, 4096))) + b"\x00x"
        key = loaded.key(head)
        if key is None:
            continue
        assert svg[0] not in key
        copy = loaded.handle(head, False) or loaded.handle(head, False)
        assert copy is not None and copy.from_buffer(head) == full.from_buffer(head)
    doctype = b"\x07\x08<!DOCTYPE svg PUBLIC>\x00" + b"\x01" * 100
    key = loaded.key(doctype)
    assert key is not None and svg[0] in key
    copy = loaded.handle(doctype, False) or loaded.handle(doctype, False)
    assert copy is not None and copy.from_buffer(doctype) == full.from_buffer(doctype)
