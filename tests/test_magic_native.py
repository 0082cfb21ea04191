"""The compiled program (``_magic_native.Program``) answers as the program's bytes do.

``possible``/``which``/``matching`` take a program either as its bytes, read on every
call, or read once into an index; the bytes form is the reference (itself checked against
the Python one in tests/test_magic_subset.py and tests/test_magic_binary.py).
"""

from __future__ import annotations

import random
import struct

import pytest

from examkit import magic_binary, magic_subset
from examkit.magic_subset import ANYWHERE, AT_OFFSET, LINE_START, Condition, Literal, pack

native = pytest.importorskip("examkit._magic_native", reason="examkit._magic_native not built")


def _programs() -> dict[str, tuple[Condition, ...]]:
    if magic_subset.unavailable() is not None:
        pytest.skip(f"smaller libmagic not usable here: {magic_subset.unavailable()}")
    mgc, why = magic_subset.usable_database()
    assert mgc is not None, why
    text = magic_subset.build(mgc)
    binary = magic_binary.build(mgc)
    return {"text": text.conditions, "keyed": text.keyed, "binary": binary.candidates,
            "guards": binary.guards}  # fmt: skip


def _heads(conditions: tuple[Condition, ...], rng: random.Random) -> list[bytes]:
    """Random heads, and heads holding a clause's literals (some in upper case, some one
    byte short of the end, some cut before an offset literal)."""
    heads = [b"", b"a", b"\x00", b"\n", bytes(8192), b"A" * 8192]
    heads += [rng.randbytes(rng.randrange(1, 4096)) for _ in range(60)]
    clauses = [clause for cond in conditions for clause in cond]
    for clause in rng.sample(clauses, min(300, len(clauses))):
        head = bytearray(rng.randbytes(rng.randrange(16, 2048)))
        for lit in clause:
            data = lit.data.upper() if rng.random() < 0.3 else lit.data
            at = lit.offset if lit.mode == AT_OFFSET else rng.randrange(len(head) + 1)
            if lit.mode == LINE_START and at:
                head[at - 1 : at] = b"\n"
            head[at : at + len(data)] = data
        heads.append(bytes(head))
        if any(lit.mode == AT_OFFSET for lit in clause) and len(head) > 2:
            heads.append(bytes(head[: rng.randrange(1, len(head))]))
    return heads


def test_the_compiled_program_answers_as_its_bytes() -> None:
    rng = random.Random(17)
    for name, conditions in _programs().items():
        packed = pack(conditions)
        program = native.Program(packed)
        assert program.rules == len(conditions) and program.program == packed
        hits = 0
        for head in _heads(conditions, rng):
            expected = native.matching(packed, head)
            assert native.matching(program, head) == expected, (name, head[:32])
            assert native.possible(program, head) is native.possible(packed, head)
            if len(conditions) <= 62:
                assert native.which(program, head) == native.which(packed, head)
            hits += bool(expected)
        assert hits > 50, name  # the crafted heads do reach the clauses


def test_edge_cases_answer_as_the_bytes() -> None:
    lit = Literal
    conditions: list[Condition] = [
        ((),),  # a clause without literals: every head
        ((lit(AT_OFFSET, 0, b"ab"), lit(ANYWHERE, 0, b"cd")),),
        ((lit(AT_OFFSET, 3, b"x"),), (lit(LINE_START, 0, b"go"),)),
        ((lit(AT_OFFSET, 2, b""),),),  # empty at an offset: found if the head reaches it
        ((lit(AT_OFFSET, 1, b"Q"),),),  # upper case is never matched: heads are folded
        ((lit(AT_OFFSET, 5000, b"zz"),), (lit(AT_OFFSET, 0, b"ab"),)),
    ]
    packed = pack(conditions)
    program = native.Program(packed)
    heads = [b"", b"a", b"ab", b"ABcd", b"abXx", b"qQq", b"go", b"x\ngo", b"xgo", b"ab",
             b"\x00" * 5001 + b"ZZ", b"\x00" * 5001 + b"z"]  # fmt: skip
    for head in heads:
        assert native.matching(program, head) == native.matching(packed, head), head
        assert native.which(program, head) == native.which(packed, head), head
        assert native.possible(program, head) is native.possible(packed, head), head
    assert native.matching(program, b"ABcd") == [0, 1, 3, 5]
    assert native.matching(program, b"") == [0]


def test_a_malformed_program_is_refused() -> None:
    good = pack([((Literal(ANYWHERE, 0, b"abc"),),)])
    for bad in (b"", good[:-1], struct.pack("<I", 2) + good[4:]):
        with pytest.raises(ValueError):
            native.Program(bad)
    many = native.Program(pack([((Literal(ANYWHERE, 0, b"a"),),)] * 63))
    with pytest.raises(ValueError):
        native.which(many, b"a")
    assert len(native.matching(many, b"a")) == 63


def test_the_kept_head_is_reused_only_for_the_same_bytes() -> None:
    """A head's folded copy and pair table are kept for the next call: heads of the same
    length that differ late, and heads longer than what is kept, still get their own."""
    program = native.Program(pack([((Literal(ANYWHERE, 0, b"needle"),),),
                                   ((Literal(LINE_START, 0, b"noodle"),),)]))  # fmt: skip
    for size in (100, 8192 - 7, 9000):
        pad = b"x" * (size - 7)
        with_needle, with_noodle = pad + b"\nneedle", pad + b"\nnoodle"
        for _ in range(2):  # each head twice in a row, then the other
            assert native.matching(program, with_needle) == [0]
            assert native.matching(program, with_needle) == [0]
            assert native.matching(program, with_noodle) == [1]
            assert native.possible(program, with_noodle)
            assert native.matching(program, pad + b"\nNEEDLE") == [0]
            assert native.matching(program, pad + b"\nneedlE"[:-1] + b"x") == []


def test_pairs_and_triples_only_reject() -> None:
    """A literal is searched for only when each of its byte pairs and (hashed) triples is in
    the head: a head holding all of them but not the literal, or the literal only in upper
    case, answers as the reference does; so do heads longer than the kept one, and a head
    that differs from the last only where its triples do."""
    conditions: list[Condition] = [
        ((Literal(ANYWHERE, 0, b"abcabd"),),),
        ((Literal(LINE_START, 0, b"xyzzy"),),),
        ((Literal(ANYWHERE, 0, b"qr"), Literal(ANYWHERE, 0, b"stu")),),
    ]
    packed = pack(conditions)
    program = native.Program(packed)
    heads = []
    for size in (64, 9000):
        pad = b"-" * (size - 40)
        tails = [b"abca cabd", b"ABCABD", b" abcabd", b"zz xyzzy", b"\nxyzzy", b"\nxyzzx",
                 b"qr st tu", b"qr stu"]  # fmt: skip
        heads += [pad + tail for tail in tails]
    for head in heads + heads[::-1]:
        expected = [i for i, c in enumerate(conditions) if magic_subset.possible([c], head)]
        assert native.matching(program, head) == expected, head[-12:]
        assert native.matching(packed, head) == expected, head[-12:]
        assert native.which(program, head) == sum(1 << i for i in expected)
    assert native.matching(program, b"-" * 24 + b"abca cabd") == []
    assert native.matching(program, b"-" * 24 + b"xabcabdx") == [0]
