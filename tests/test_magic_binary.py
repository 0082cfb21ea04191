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
