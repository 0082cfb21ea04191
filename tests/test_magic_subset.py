"""The smaller libmagic database for ASCII text gives the full database's answers.

The oracle is libmagic itself: a plain python-magic handle on the system's database.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import magic
import pytest

from examkit import filetype, magic_subset
from examkit.hashing import HEAD_SIZE
from examkit.magic_subset import ANYWHERE, AT_OFFSET, LINE_START, Literal
from tests.conftest import compile_magic

native = pytest.importorskip("examkit._magic_native", reason="examkit._magic_native not built")


@pytest.fixture(scope="module")
def typer() -> magic_subset.TextMagic:
    reason = magic_subset.unavailable()
    if reason is not None:
        pytest.skip(f"smaller magic database not usable here: {reason}")
    loaded, why = magic_subset.load()
    assert loaded is not None, why  # built here, it must pass its own sample check
    return loaded


@pytest.fixture(scope="module")
def full() -> magic.Magic:
    return magic.Magic(mime=True)


def _machine_text(limit: int) -> list[bytes]:
    """Heads of this machine's own text files (documentation, Python sources,
    configuration, scripts), in a fixed order."""
    heads: list[bytes] = []
    seen: set[bytes] = set()
    roots = ["/usr/share/doc", "/usr/lib/python3.11", "/etc", "/usr/share/perl5", "/usr/bin"]

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
        if magic_subset.is_text(head) and head not in seen:
            seen.add(head)
            heads.append(head)
            if len(heads) >= limit:
                break
    return heads


def _prose(count: int) -> list[bytes]:
    """Generated text of the kind the scan benchmark writes (words, lines, some digits)."""
    rng = random.Random(77)
    words = [
        "the",
        "of",
        "and",
        "a",
        "to",
        "in",
        "is",
        "was",
        "for",
        "on",
        "that",
        "with",
        "as",
        "by",
        "at",
        "from",
        "this",
        "table",
        "chart",
        "character",
        "report",
        "evidence",
        "case",
        "image",
        "file",
        "record",
        "court",
        "page",
        "line",
    ]
    out = []
    for _ in range(count):
        lines = [
            " ".join(rng.choice(words) for _ in range(rng.randrange(3, 14)))
            + rng.choice([".", ",", "", ";", " 42."])
            for _ in range(rng.randrange(1, 200))
        ]
        out.append("\n".join(lines).encode()[:HEAD_SIZE])
    return out


def test_same_answers_as_the_full_database(
    typer: magic_subset.TextMagic, full: magic.Magic
) -> None:
    heads = _machine_text(2500) + _prose(600)
    covered = 0
    for head in heads:
        if typer.covers(head):
            covered += 1
            assert typer.from_buffer(head) == full.from_buffer(head), head[:120]
    assert covered >= 600  # the prose at least; and some of the machine's files


def _satisfying(clause: tuple[Literal, ...]) -> bytes:
    """A text head that holds every literal of a clause where the clause wants it."""
    at = [lit for lit in clause if lit.mode == AT_OFFSET]
    head = bytearray(b"x" * (max((lit.offset + len(lit.data) for lit in at), default=0)))
    for lit in at:
        head[lit.offset : lit.offset + len(lit.data)] = lit.data
    for lit in clause:
        if lit.mode == LINE_START:
            head += b"\n" + lit.data + b" x\n"
        elif lit.mode == ANYWHERE:
            head += b" " + lit.data + b" "
    return bytes(head) + b"\nplain words\n"


def _near_miss(clause: tuple[Literal, ...]) -> bytes:
    """The same head with the last byte of each literal changed: no longer holding it."""
    changed = tuple(
        Literal(lit.mode, lit.offset, lit.data[:-1] + (b"q" if lit.data[-1:] != b"q" else b"z"))
        for lit in clause
    )
    return _satisfying(changed)


def test_near_misses_of_every_checked_rule(
    typer: magic_subset.TextMagic, full: magic.Magic
) -> None:
    """Heads built from each left-out rule's own literals: those that hold them go to the
    full database; those one byte off that pass the check type alike in both."""
    conditions = typer.subset.conditions
    differs = passed = 0
    for condition in conditions:
        clause = condition[0]
        holding = _satisfying(clause)
        if not magic_subset.is_text(holding):
            continue
        assert native.possible(typer.program, holding)
        assert magic_subset.possible(conditions, holding)
        if typer.handle.from_buffer(holding) != full.from_buffer(holding):
            differs += 1  # the rule matters: the check is what keeps the answer right
        miss = _near_miss(clause)
        if typer.covers(miss):
            passed += 1
            assert typer.from_buffer(miss) == full.from_buffer(miss), miss[:120]
    assert differs >= 50 and passed >= 200


def test_compiled_check_equals_the_python_one(typer: magic_subset.TextMagic) -> None:
    rng = random.Random(3)
    heads = _prose(200) + _machine_text(300)
    for condition in typer.subset.conditions[::7]:
        heads.append(_satisfying(condition[0]))
    heads += [bytes(rng.choice(magic_subset.TEXT_BYTES) for _ in range(rng.randrange(1, 300)))
              for _ in range(200)]  # fmt: skip
    for head in heads:
        expected = magic_subset.possible(typer.subset.conditions, head)
        assert native.possible(typer.program, head) is expected


def test_heads_longer_than_the_kept_one_and_many_in_a_row_are_checked_alike(
    typer: magic_subset.TextMagic,
) -> None:
    """A head over 8 KiB gets tables of its own; 600 heads in a row use up the kept
    tables' marks twice (each is cleared once in 255 heads): the answers stay the Python
    check's."""
    long_heads = [b"x " * 6000 + head for head in _prose(20) + _machine_text(20)]
    for head in long_heads + _prose(300) + _machine_text(300):
        expected = magic_subset.possible(typer.subset.conditions, head)
        assert native.possible(typer.program, head) is expected
        assert native.which(typer.keyed_program, head) == magic_subset.which(
            typer.subset.keyed, head
        )
    assert min(map(len, long_heads)) > 8192


def test_a_malformed_program_is_refused() -> None:
    program = magic_subset.pack(((((Literal(ANYWHERE, 0, b"abcdef")),),),))
    assert native.possible(program, b"xx abcdef yy") is True
    assert native.possible(program, b"xx abcdeg yy") is False
    with pytest.raises(ValueError, match="malformed"):
        native.possible(program[:-2], b"xx abcdef yy")


def test_only_ascii_text_is_covered(typer: magic_subset.TextMagic) -> None:
    assert typer.covers(b"plain words only\n")
    assert not typer.covers(b"")
    assert not typer.covers("caf\u00e9 words\n".encode())  # UTF-8: converted by libmagic
    assert not typer.covers(b"words\x00\n")
    assert not typer.covers(b"#!/bin/sh\necho hello\n")  # a left-out rule may match


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (rb"^require\([\"']", [[(LINE_START, b"require(")]]),
        (rb"^(import|export).* from ", [[(ANYWHERE, b"import"), (ANYWHERE, b" from ")],
                                        [(ANYWHERE, b"export"), (ANYWHERE, b" from ")]]),
        (rb"^[ \t]{0,50}\.globl", [[(ANYWHERE, b".globl")]]),
        (rb"a?bc*d+e", [[(ANYWHERE, b"b"), (ANYWHERE, b"d"), (ANYWHERE, b"e")]]),
        (rb"(a|)xyz", [[(ANYWHERE, b"xyz")]]),
        (rb"Foo|BAR", [[(ANYWHERE, b"foo")], [(ANYWHERE, b"bar")]]),
        (rb"\wfoo", None),  # a GNU operator: not followed
        (rb"x|[a-z]+", None),  # one alternative needs no literal
        (rb"(unclosed", None),
        (rb"\`start", None),
    ],
)  # fmt: skip
def test_regex_literals(pattern: bytes, expected: list[list[tuple[int, bytes]]] | None) -> None:
    condition = magic_subset.regex_condition(pattern)
    if expected is None:
        assert condition is None
    else:
        assert condition is not None
        assert [[(lit.mode, lit.data) for lit in clause] for clause in condition] == expected


def test_a_database_of_another_format_is_refused() -> None:
    with pytest.raises(ValueError):
        magic_subset.parse(b"\x00" * magic_subset.RECORD * 3)
    with pytest.raises(ValueError):
        magic_subset.parse(b"not a database")


def test_switched_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMKIT_FULL_MAGIC", "1")
    loaded, why = magic_subset.load()
    assert loaded is None and "EXAMKIT_FULL_MAGIC" in why
    assert "full database for every head" in filetype.text_magic_status()


_INTEGER_RULES = (
    "0\tbelong\t0x41424344\tbig-endian\n!:mime\ttext/x-be\n"
    "0\tleshort\t0x4241\tlittle-endian\n!:mime\ttext/x-le\n"
    "2\tlelong\t0x00000a0d\tneeds four bytes\n!:mime\ttext/x-oob\n"
    "0\tbyte\t-0x7f\tsign-extended\n!:mime\ttext/x-neg\n"
    "0\tbelong&0xffff0f00\t0x58590300\tmasked\n!:mime\ttext/x-mask\n"
    "8\tulelong\t<3\tsmall\n!:mime\ttext/x-small\n"
    "0\tbelong^0x01010101\t0x41424344\txor\n!:mime\ttext/x-xor\n"
)


@pytest.fixture(scope="module")
def integer_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Integer rules compiled by libmagic itself (magic_compile) from a source file."""
    return compile_magic(tmp_path_factory.mktemp("magic"), "ints", _INTEGER_RULES)


def test_integer_rules_read_as_libmagic_compares_them(integer_db: Path) -> None:
    """An integer ``=`` rule needs its value's bytes, in the type's order, at its offset:
    libmagic's own answers on heads built from those bytes agree."""
    db = magic.Magic(mime=True, magic_file=str(integer_db))
    entries, n0, _ = magic_subset.parse(integer_db.read_bytes())
    read = {}
    for entry in entries[:n0]:
        condition = magic_subset.entry_condition(entry)
        read[entry.offset, entry.type, entry.mask] = condition and [
            (lit.mode, lit.offset, lit.data) for lit in condition[0]
        ]
    assert read[0, 8, 0] == [(AT_OFFSET, 0, b"abcd")]  # belong: big-endian
    assert read[0, 10, 0] == [(AT_OFFSET, 0, b"ab")]  # leshort 0x4241: "AB" in the head
    assert read[2, 11, 0] == [(AT_OFFSET, 2, b"\r\n\x00\x00")]
    assert read[0, 1, 0] == [(AT_OFFSET, 0, b"\x81")]  # -0x7f as one byte
    masked = [v for (_, kind, mask), v in read.items() if mask and kind == 8]
    assert [(AT_OFFSET, 0, b"xy")] in masked  # only the bytes the mask keeps whole
    assert None in masked  # an XOR mask: not read
    assert read[8, 11, 0] == [(AT_OFFSET, 9, b"\x00\x00\x00")]  # unsigned < 3: high bytes 0
    assert db.from_buffer(b"ABCD words") == "text/x-be"
    assert db.from_buffer(b"ABzz words") == "text/x-le"
    assert db.from_buffer(b"\x81 words") == "text/x-neg"
    assert db.from_buffer(b"XY\x03\x00 words") == "text/x-mask"
    assert db.from_buffer(b"XY\xf3\x7f words") == "text/x-mask"  # masked-off bits are free
    assert db.from_buffer(b"XZ\x03\x00 words") != "text/x-mask"
    assert db.from_buffer(b"zzzzzzzz\x02\x00\x00\x00") == "text/x-small"
    assert db.from_buffer(b"zzzzzzzz\x02\x00\x01\x00") != "text/x-small"
    assert db.from_buffer(b"@CBE words") == "text/x-xor"
    # a head too short for the type is not matched, though its missing bytes would be 0
    assert db.from_buffer(b"zz\r\n") != "text/x-oob"
    assert db.from_buffer(b"zz\r\n\x00\x00") == "text/x-oob"
    subset = magic_subset.build(integer_db.read_bytes())
    checked = [[(lit.offset, lit.data) for lit in c[0]] for c in subset.conditions]
    assert checked == [[(0, b"abcd")]]  # the others: kept (short or XOR) or never text
    assert subset.left_out == 4 and subset.kept == 3  # le, masked (2 bytes: weak), xor kept


@pytest.fixture(scope="module")
def every_copy(typer: magic_subset.TextMagic) -> magic_subset.TextMagic:
    """A typer that makes a copy for every set of keyed rules it meets."""
    return magic_subset.TextMagic(typer.subset, native.possible, native.which, 1, 64)


def test_compiled_keys_equal_the_python_ones(typer: magic_subset.TextMagic) -> None:
    keyed = typer.subset.keyed
    assert 0 < len(keyed) <= magic_subset.MAX_KEYED
    heads = _prose(200) + _machine_text(400) + [_satisfying(c[0]) for c in keyed]
    heads += [_near_miss(c[0]) for c in keyed]
    seen = set()
    for head in heads:
        key = native.which(typer.keyed_program, head)
        assert key == magic_subset.which(keyed, head), head[:80]
        seen.add(key)
    assert len(seen) >= 20  # the heads do reach different sets of rules


def test_every_keyed_rule_is_set_by_its_literals(
    typer: magic_subset.TextMagic, every_copy: magic_subset.TextMagic, full: magic.Magic
) -> None:
    """A head holding a keyed rule's literals sets its bit and is typed by a copy with
    that rule; the near miss, without the bit, types alike in a copy without it."""
    checked = 0
    for i, condition in enumerate(typer.subset.keyed):
        holding = _satisfying(condition[0])
        assert every_copy.key(holding) >> i & 1, condition[0]
        miss = _near_miss(condition[0])
        if every_copy.covers(miss) and not every_copy.key(miss) >> i & 1:
            checked += 1
            assert every_copy.from_buffer(miss) == full.from_buffer(miss), miss[:120]
        if every_copy.covers(holding):
            assert every_copy.from_buffer(holding) == full.from_buffer(holding), holding[:120]
    assert checked >= len(typer.subset.keyed) // 2


def test_copies_give_the_full_database_answers(
    every_copy: magic_subset.TextMagic, full: magic.Magic
) -> None:
    heads = _machine_text(2500) + _prose(600)
    covered = 0
    for head in heads:
        if every_copy.covers(head):
            covered += 1
            assert every_copy.from_buffer(head) == full.from_buffer(head), head[:120]
    assert covered >= 600
    assert len(every_copy.copies) >= 10  # most heads were typed by a copy of their own
    assert every_copy.subset.every_key in every_copy.copies


def test_copies_are_bounded_and_fall_back_to_a_superset(typer: magic_subset.TextMagic) -> None:
    bounded = magic_subset.TextMagic(typer.subset, native.possible, native.which, 2, 3)
    heads = _machine_text(600) + _prose(100)
    for head in heads:
        if bounded.covers(head):
            key = bounded.key(head)
            handle = bounded._copy(key)
            held = next(k for k, h in bounded.copies.items() if h is handle)
            assert key & ~held == 0  # the copy used holds every rule the head may match
    assert len(bounded.copies) == 3


def test_which_refuses_too_many_rules() -> None:
    rule = ((Literal(ANYWHERE, 0, b"abcdef"),),)
    program = magic_subset.pack([rule] * 63)
    with pytest.raises(ValueError):
        native.which(program, b"abcdef")
    assert native.which(magic_subset.pack([rule] * 62), b" abcdef ") == (1 << 62) - 1


_INDIRECT_RULES = (  # a short (kept) rule whose continuation runs the rules again further on
    "0\tstring\tQZ\tqz container\n>2\tindirect\tx\t\\b, holding\n"
    "0\tstring\tMNOPQ\ttarget\n!:mime\ttext/x-target\n"
)


def test_a_kept_rule_reaching_an_indirect_test_is_checked(tmp_path: Path) -> None:
    """``indirect`` runs the first set again on the bytes from its offset, where the left-out
    MNOPQ rule was never looked for: the head must go to the full database."""
    compiled = compile_magic(tmp_path, "ind", _INDIRECT_RULES).read_bytes()
    entries, n0, n1 = magic_subset.parse(compiled)
    (reaching,) = magic_subset.reaching_indirect(entries, n0, n1)  # (sorted by strength)
    assert entries[reaching].value.startswith(b"QZ")
    full = magic.Magic(mime=True, magic_file=str(tmp_path / "ind.mgc"))
    head = b"QZMNOPQ words\n"
    assert full.from_buffer(head) == "text/x-target"  # found by the indirect test
    subset = magic_subset.build(compiled)
    typer = magic_subset.TextMagic(subset, native.possible, native.which,
                                   matching=native.matching)  # fmt: skip
    assert typer.handle.from_buffer(head) == "text/plain"  # the copy alone would miss it
    assert not typer.covers(head)  # so the head goes to the full database
    for _round in range(40):  # however often it is seen, no wide copy takes it either
        assert typer.copy_for(head) is None
    assert typer.covers(b"QX MNOPQ words\n")
    assert typer.from_buffer(b"QX MNOPQ words\n") == full.from_buffer(b"QX MNOPQ words\n")


_QUIET_RULES = (  # top-level tests with nothing of their own to print
    "0\tsearch/4096\tzork\n>0\tregex\t\\^zork[\\ ]+frobnitz\tzork text\n!:mime\ttext/x-zork\n"
    "0\tsearch/4096\tgrue\tgrue text\n!:mime\ttext/x-grue\n"
    "0\tsearch/4096\tplug\n>&0\tstring\t\\ xyzzy\tmagic words\n!:mime\ttext/x-magic\n"
    "0\tstring\tQQ\n>4\tbelong\t0x00010203\tbinary inside\n!:mime\ttext/x-never\n"
    "0\tsearch/4096\tbork\n>0\tdefault\tx\tbork default\n!:mime\ttext/x-bork\n"
)


def test_a_quiet_rule_needs_one_of_its_continuations(tmp_path: Path) -> None:
    """A top-level test with no description, MIME type or extension changes nothing by
    matching: only a first-level continuation can. Its condition is its own literals and
    those of one continuation (anywhere when the offset is relative); a continuation
    whose literals text never has leaves the rule out; one without a condition to read
    (``default``) leaves the top-level test's own."""
    compiled = compile_magic(tmp_path, "quiet", _QUIET_RULES).read_bytes()
    entries, n0, _n1 = magic_subset.parse(compiled)
    groups = {entries[i].value.split(b"\0")[0]: (i, j)
              for i, j in magic_subset.rule_groups(entries, 0, n0)}  # fmt: skip
    assert entries[groups[b"zork"][0]].quiet and not entries[groups[b"grue"][0]].quiet

    def read(name: bytes) -> list[set[tuple[int, bytes]]] | None:
        condition = magic_subset.rule_condition(entries, *groups[name])
        return condition and [{(lit.mode, lit.data) for lit in c} for c in condition]

    assert read(b"zork") == [{(ANYWHERE, b"zork"), (LINE_START, b"zork"),
                              (ANYWHERE, b"frobnitz")}]  # fmt: skip
    assert read(b"grue") == [{(ANYWHERE, b"grue")}]
    assert read(b"plug") == [{(ANYWHERE, b"plug"), (ANYWHERE, b" xyzzy")}]
    assert read(b"QQ") == [{(AT_OFFSET, b"qq"), (AT_OFFSET, b"\x00\x01\x02\x03")}]
    assert read(b"bork") == [{(ANYWHERE, b"bork")}]
    subset = magic_subset.build(compiled)
    assert subset.left_out == 1 and subset.kept == 4  # QQ: never in text
    full = magic.Magic(mime=True, magic_file=str(tmp_path / "quiet.mgc"))
    typer = magic_subset.TextMagic(subset, native.possible, native.which, 1, 64)
    keyed = {lit.data for c in subset.keyed for lit in c[0]}
    assert {b"frobnitz", b" xyzzy"} <= keyed
    heads = {
        b"zork and more zork, no other word\n": "text/plain",
        b"zork  frobnitz\n": "text/x-zork",
        b"plug xyzzy\n": "text/x-magic",
        b"plug, then nothing\n": "text/plain",
        b"grue\n": "text/x-grue",
        b"bork\n": "text/x-bork",
        b"QQ  words\n": "text/plain",
    }
    for head, mime in heads.items():
        assert full.from_buffer(head) == mime
        assert typer.covers(head) and typer.from_buffer(head) == mime, head
    zork_only = typer.key(b"zork and more zork, no other word\n")
    assert zork_only == 0  # neither quiet rule is in the copy that types it


_NOT_FIRST_RULES = (  # libmagic's FORTRAN rule: every line starts with C or a blank
    "0\tregex/100l\t!\\^[^Cc\\ \\t].*$\n"
    ">0\tregex/100l\t\\^[Cc][\\ \\t]\tFORTRAN program text\n!:mime\ttext/x-fortran\n"
)


def test_a_negated_first_character_class_needs_one_of_its_characters_first(
    tmp_path: Path,
) -> None:
    """``!^[^Cc \\t].*$`` fails (REG_NEWLINE: at the first line) unless the head starts with
    C, c, a blank, a newline or a NUL; the rule is keyed on that first byte, and a copy
    without it types every other head as the full database does. On a long line the
    regular expression reads to its end: 1.08M instructions a head typed, 0.77M without
    it (cachegrind, 1,000 heads of words without newlines)."""
    assert magic_subset.negated_regex_condition(b"^[^Cc \t].*$", 0) == tuple(
        (Literal(AT_OFFSET, 0, bytes([b])),) for b in sorted(b"\x00\n\t c")
    )
    assert magic_subset.negated_regex_condition(b"^[^Cc \t].*$", 4) is None
    assert magic_subset.negated_regex_condition(b"^[^a-z].*$", 0) is None  # a range
    assert magic_subset.negated_regex_condition(b"^[^Cc].*x$", 0) is None
    compiled = compile_magic(tmp_path, "fortran", _NOT_FIRST_RULES).read_bytes()
    subset = magic_subset.build(compiled)
    assert len(subset.keyed) == 1
    full = magic.Magic(mime=True, magic_file=str(tmp_path / "fortran.mgc"))
    without = magic_subset.open_copy(subset.database(0))
    typer = magic_subset.TextMagic(subset, native.possible, native.which, 1, 64)
    heads = {
        b"C     PROGRAM HELLO\n      PRINT *, 'HI'\n      END\n": "text/x-fortran",
        b"c lower-case comment\n      X = 1\n": "text/x-fortran",
        b"\n\nC after empty lines\n      Y = 2\n": "text/x-fortran",
        b"Cobol is not this\n": "text/plain",
        b"plain prose on one line " * 300: "text/plain",
        b"Dear reader,\nC is a language.\n": "text/plain",
    }
    for head, mime in heads.items():
        assert full.from_buffer(head) == mime, head[:30]
        assert typer.covers(head) and typer.from_buffer(head) == mime, head[:30]
        if head[:1] not in (b"C", b"c", b" ", b"\t", b"\n"):
            assert typer.key(head) == 0  # the copy without the rule types it
            assert without.from_buffer(head) == mime
    fortran = b"C comment\n      X = 1\n"
    assert typer.key(fortran) == 1 and without.from_buffer(fortran) != "text/x-fortran"


def test_wide_copy_gives_the_full_database_answers(
    typer: magic_subset.TextMagic, full: magic.Magic
) -> None:
    """ASCII heads that some left-out rule may match (sources, markup, scripts): the wide
    copy, holding the left-out rules such heads most often may match, types those whose
    rules it holds as the full database does."""
    wide = magic_subset.TextMagic(typer.subset, native.possible, native.which,
                                  matching=native.matching)  # fmt: skip
    widely = 0
    for head in _machine_text(2500) + _prose(200):
        copy = wide.copy_for(head)
        if copy is None:
            continue
        if copy is wide.wide:
            widely += 1
            assert set(native.matching(wide.program, head)) <= wide.wide_rules
        assert copy.from_buffer(head) == full.from_buffer(head), head[:120]
    assert widely >= 500
    assert 0 < len(wide.wide_rules) <= magic_subset.WIDE_RULES


def _one_rule_heads(typer: magic_subset.TextMagic, count: int) -> list[bytes]:
    """ASCII heads that exactly one left-out rule (no guard) may match, one rule each."""
    found: list[bytes] = []
    for index, clauses in enumerate(typer.subset.conditions):
        if index in typer.subset.guards or len(found) == count:
            continue
        head = _satisfying(clauses[0]) + b" and then some plain words.\n"
        if magic_subset.is_text(head) and list(native.matching(typer.program, head)) == [index]:
            found.append(head)
    return found


def test_wide_copy_is_made_again_once_heads_keep_missing_it(
    typer: magic_subset.TextMagic, full: magic.Magic
) -> None:
    """A head the wide copy does not fit goes to the full database (~1.3 ms for text against
    ~30 µs): after WIDE_MISSES such heads the wide copy is made again with their rules, even
    when they are fewer than one in ten (one in 13 here; the benchmark's prose sent 119 of a
    worker's 12,377 heads there)."""
    wide = magic_subset.TextMagic(typer.subset, native.possible, native.which,
                                  matching=native.matching)  # fmt: skip
    common, rare = _one_rule_heads(typer, 2)
    for _ in range(magic_subset.WIDE_AFTER):  # then the wide copy is made, with its rule
        wide.copy_for(common)
    misses = 0
    for _round in range(60):
        for _ in range(12):
            assert wide.copy_for(common) is not None
        copy = wide.copy_for(rare)
        if copy is None:
            misses += 1
            continue
        assert copy is wide.wide and copy.from_buffer(rare) == full.from_buffer(rare)
    assert 0 < misses <= magic_subset.WIDE_MISSES + 1
    assert wide.copy_for(common) is wide.wide  # it still holds the common head's rule


def test_heads_a_guard_may_match_never_take_a_copy(
    typer: magic_subset.TextMagic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(magic_subset, "WIDE_AFTER", 1)  # a wide copy from the first head on
    wide = magic_subset.TextMagic(typer.subset, native.possible, native.which,
                                  matching=native.matching)  # fmt: skip
    guards = sorted(typer.subset.guards)
    assert guards  # libmagic 5.44: rules reaching indirect whose literals text can hold
    heads = [_satisfying(typer.subset.conditions[i][0]) for i in guards]
    heads = [h for h in heads if magic_subset.is_text(h)]
    assert heads
    for _round in range(3):  # were they counted, the wide copy would hold their rules
        for head in heads:
            assert wide.copy_for(head) is None


def test_ascii_text_is_every_byte_libmagic_counts_as_text() -> None:
    """``is_text``: libmagic's 'T' bytes of text_chars (BEL to CR, ESC, space to ~), all."""
    encoding = magic.Magic(mime_encoding=True)
    for byte in range(256):
        head = b"some text " + bytes([byte]) + b" more text\n"
        assert magic_subset.is_text(head) == (byte in magic_subset.TEXT_BYTES)
        if magic_subset.is_text(head):
            assert encoding.from_buffer(head) == "us-ascii", byte
    assert not magic_subset.is_text(b"")


_ONE_PASS_RULES = (
    "0\tstring\tBI\tbinary rule\n!:mime\tapplication/x-binary-rule\n"
    "0\tstring/t\tBITEXTYTEXTY\ttext rule\n!:mime\ttext/x-texty\n"
    "0\tstring/t\tTEXTONLY\tanother text rule\n!:mime\ttext/x-text-only\n"
    "0\tstring\tOWND\ta rule's own default\n!:mime\tapplication/octet-stream\n"
    "0\tsearch/64\tQUIETWORD\n>0\tsearch/64\tLOUD\tquiet then loud\n!:mime\ttext/x-loud\n"
)


def test_one_pass_copies_answer_as_two_passes(tmp_path: Path) -> None:
    """A one-pass copy tries the text rules after the binary ones in libmagic's first
    pass; for ASCII heads it answers as the same database does in its two passes (the
    oracle: libmagic on the compiled database as it is)."""
    mgc = compile_magic(tmp_path, "onepass", _ONE_PASS_RULES)
    compiled = mgc.read_bytes()
    entries, n0, _n1 = magic_subset.parse(compiled)
    top = [e for e in entries[:n0] if e.cont_level == 0]
    kinds = [("text" if e.flag & magic_subset.TEXTTEST else "binary", e.value[:4]) for e in top]
    # the long text string sorts first: left there, it would answer before the binary rule
    assert kinds.index(("text", b"BITE")) < kinds.index(("binary", b"BI"))
    two_passes = magic.Magic(mime=True, magic_file=str(mgc))
    one = magic_subset.OnePassCopy(compiled)
    heads = {
        b"BITEXTYTEXTY words\n": "application/x-binary-rule",  # the first pass's rule
        b"TEXTONLY words\n": "text/x-text-only",
        b"OWND words\n": "application/octet-stream",  # a rule's own, not the default
        b"QUIETWORD and LOUD\n": "text/x-loud",
        b"QUIETWORD alone\n": "text/plain",
        b"plain words\n": "text/plain",
        b"x": "application/octet-stream",  # one byte: libmagic gives up before either pass
    }
    for head, expected in heads.items():
        assert magic_subset.is_text(head)
        assert two_passes.from_buffer(head) == expected, head
        assert one.from_buffer(head) == expected, head


def test_one_pass_moves_only_text_rules(typer: magic_subset.TextMagic) -> None:
    """The system database's copy: the same records, binary rules first in their order,
    then the text-only rules in theirs with the first-pass bit set; named rules as they
    were; a rule's own application/octet-stream renamed."""
    database = typer.subset.database()
    moved = magic_subset.one_pass(database)
    assert (
        len(moved) == len(database)
        and moved[: magic_subset.RECORD] == database[: magic_subset.RECORD]
    )
    entries, n0, n1 = magic_subset.parse(database)
    after, m0, m1 = magic_subset.parse(moved)
    assert (m0, m1) == (n0, n1)
    groups = magic_subset.rule_groups(entries, 0, n0)
    binary = [(a, b) for a, b in groups if entries[a].flag & magic_subset.BINTEST]
    text = [(a, b) for a, b in groups if not entries[a].flag & magic_subset.BINTEST]
    assert text  # the copy holds text rules (their moving is what is tested)
    at = 0
    for a, b in binary + text:
        for i in range(a, b):
            old, new = entries[i], after[at]
            flag = old.flag | (magic_subset.BINTEST if (a, b) in text and i == a else 0)
            assert (new.cont_level, new.flag, new.type, new.offset, new.value) == (
                old.cont_level, flag, old.type, old.offset, old.value)  # fmt: skip
            at += 1
    for i in range(n0, n0 + n1):  # named rules: where they were, as they were
        old, new = entries[i], after[i]
        assert (new.cont_level, new.flag, new.type, new.value) == (
            old.cont_level, old.flag, old.type, old.value)  # fmt: skip
    r, field = magic_subset.RECORD, slice(224, 304)  # struct magic's mimetype
    default, standin = b"application/octet-stream", b"application/x-examkit-rule-octet-stream"
    records = range(1, 1 + n0 + n1)
    own = sum(database[r * i :][field].split(b"\0")[0] == default for i in records)
    renamed = sum(moved[r * i :][field].split(b"\0")[0] == standin for i in records)
    assert renamed == own and b"application/octet-stream\0" not in moved
