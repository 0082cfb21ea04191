"""libmagic's answer for binary heads, from small copies of its own database.

A head that is not ASCII text is typed by libmagic's binary pass (and, if it reads as
text in another encoding, by its text rules on the converted bytes). Of the ~3,500
top-level rules, ~2,900 are binary-only tests whose condition can be read (a literal or
an integer value at a fixed offset: ``examkit.magic_subset.entry_condition``; for a quiet
one, with one of its continuations': ``rule_condition``); a given head can satisfy only a
handful of them. This module keeps, for each set of those rules
a head may match (its *key*, from the compiled ``matching``), a copy of the database
without the others:

- a binary-only rule is never tried by the text pass, and in the binary pass one whose
  top-level test fails has no other effect, so for a head whose key is K the copy
  holding the rules of K gives the full database's answer;
- a rule of both passes (one: SVG's ``search/4096/cWbt``, 60% of the time libmagic
  spends on a head it does not recognise) is a candidate only for heads libmagic's text
  pass will not see (``binary_pass_only``): in every other head's key;
- an ``indirect`` test runs the rules again from an offset, where the left-out ones were
  not looked for: a head that a rule reaching one may match goes to the full database
  (``guards``), and the copy refuses to build if a text rule, or a rule without a
  condition, reaches one;
- a copy keeps only the named rules its rules ``use`` (at any depth): the rest cannot
  be reached.

Copies are made for the sets seen most (``BUILD_AFTER`` sightings, at most
``MAX_COPIES`` per process, the least-seen replaced); a head whose set has no copy goes
to the full database. Before use, the copies must type sample heads as the full
database does; ``EXAMKIT_FULL_MAGIC=1`` switches this off with the text subset.
"""

from __future__ import annotations

import random
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from .magic_cache import conditions_from, kept, literal_rows
from .magic_subset import (
    BINTEST,
    RECORD,
    TEXTTEST,
    TYPE_NAME,
    TYPE_USE,
    Condition,
    analyse,
    compiled,
    entry_condition,
    is_text,
    open_copy,
    room_for,
    rule_condition,
    rule_groups,
    rule_name,
    usable_database,
)

BUILD_AFTER = 2
MAX_COPIES = 8
_AGE_EVERY = 2048


class Group(NamedTuple):  # thousands are made as the cached subsets are loaded
    """One top-level rule with its continuations, and the named rules it uses (closure)."""

    candidate: int  # index into BinarySubset.candidates, or -1: in every copy
    start: int  # its records: mgc[start:end] (slices of one object: a forked worker
    end: int  # that reads them copies no page of the database)
    names: frozenset[int]  # indices of the named-rule groups it reaches


@dataclass(frozen=True)
class BinarySubset:
    mgc: bytes  # the compiled database
    groups: tuple[Group, ...]
    named: tuple[tuple[int, int], ...]  # each named-rule group's records, in order
    candidates: tuple[Condition, ...]  # binary-only rules a copy may leave out
    guards: tuple[Condition, ...]  # rules reaching an indirect test: may match -> full
    both: frozenset[int] = frozenset()  # candidates of both passes (see binary_pass_only)

    def database(self, key: Sequence[int]) -> bytes:
        """A copy with the rules of every copy, the candidates in ``key``, and the named
        rules those use."""
        wanted, mgc = set(key), self.mgc
        kept = [g for g in self.groups if g.candidate < 0 or g.candidate in wanted]
        names = sorted(set().union(*(g.names for g in kept)))
        first = b"".join(mgc[g.start : g.end] for g in kept)
        second = b"".join(mgc[a:b] for a, b in (self.named[n] for n in names))
        header = bytearray(mgc[:RECORD])
        struct.pack_into("<2I", header, 8, len(first) // RECORD, len(second) // RECORD)
        return bytes(header) + first + second


def _one_byte(condition: Condition) -> bool:
    """Whether one given byte satisfies the condition. A random head's first byte meets one
    such rule in ~256: as candidates they split heads into many sets, each needing a copy
    of its own (or the full database), so they are kept in every copy instead (~30 rules,
    a few microseconds a head)."""
    return any(sum(len(lit.data) for lit in clause) <= 1 for clause in condition)


# A head starting with one of these may read as text whatever else it holds (encoding.c:
# UTF-16 and UTF-32 byte-order marks, UTF-7's).
_TEXT_MARKS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"+/v")


# Bytes that are text in none of the encodings libmagic's text check tries (encoding.c:
# 'F' in text_chars, for ASCII, UTF-8, Latin-1 and extended ASCII alike, and 'F' again
# once converted from EBCDIC by ebcdic_to_ascii).
NEVER_TEXT = bytes([0, 1, 2, 3, 0x0E, 0x0F, 0x10, 0x11, 0x12, 0x13, 0x18, 0x19, 0x1C, 0x1D,
                    0x1E, 0x1F])  # fmt: skip


_NEVER_TEXT_BYTE = re.compile(b"[" + re.escape(NEVER_TEXT) + b"]")  # stops at the first


def binary_pass_only(head: bytes) -> bool:
    """Whether libmagic tries only its binary pass on ``head``: it holds a ``NEVER_TEXT``
    byte (a NUL only before the last byte that is not one: the text check drops trailing
    NULs first), and no mark of UTF-7, -16 or -32, which read as text whatever follows."""
    found = _NEVER_TEXT_BYTE.search(head, 0, len(head.rstrip(b"\0")))
    return found is not None and not head.startswith(_TEXT_MARKS)


def build(mgc: bytes) -> BinarySubset:
    """The binary subset of a compiled database; ValueError if it cannot be made safely."""
    entries, n0, n1, indirect = analyse(mgc)
    named_groups = rule_groups(entries, n0, n0 + n1)
    by_name = {rule_name(entries[i]): k for k, (i, _) in enumerate(named_groups)
               if entries[i].type == TYPE_NAME}  # fmt: skip

    def uses(start: int, end: int) -> set[int]:
        """The named-rule groups the rules ``entries[start:end]`` call."""
        return {by_name[rule_name(e)] for e in entries[start:end]
                if e.type == TYPE_USE and rule_name(e) in by_name}  # fmt: skip

    direct = [uses(i, j) for i, j in named_groups]
    closure: dict[frozenset[int], frozenset[int]] = {}

    def reach(start: set[int]) -> frozenset[int]:
        seen, todo = set(start), list(start)
        while todo:
            for used in direct[todo.pop()]:
                if used not in seen:
                    seen.add(used)
                    todo.append(used)
        return frozenset(seen)

    groups: list[Group] = []
    candidates: list[Condition] = []
    guards: list[Condition] = []
    both: set[int] = set()
    for i, j in rule_groups(entries, 0, n0):
        entry = entries[i]
        bits = entry.flag & (BINTEST | TEXTTEST)
        condition = None
        if bits == BINTEST:  # a guard's own condition; a candidate's may need a continuation
            condition = entry_condition(entry) if i in indirect else rule_condition(entries, i, j)
        elif bits == BINTEST | TEXTTEST and i not in indirect:
            condition = rule_condition(entries, i, j) or None  # never () for both passes
        candidate = -1
        if i in indirect:
            if bits != BINTEST or condition is None:
                raise ValueError(f"rule {i} reaches an indirect test and has no binary condition")
            guards.append(condition)
        elif condition == ():  # can never match: in no copy
            continue
        elif condition is not None and not _one_byte(condition):
            candidate = len(candidates)
            candidates.append(condition)
            if bits != BINTEST:
                both.add(candidate)
        called = uses(i, j)
        key = frozenset(called)
        if key not in closure:
            closure[key] = reach(called)
        groups.append(Group(candidate, RECORD * (i + 1), RECORD * (j + 1), closure[key]))
    named = tuple((RECORD * (i + 1), RECORD * (j + 1)) for i, j in named_groups)
    return BinarySubset(mgc, tuple(groups), named, tuple(candidates), tuple(guards),
                        frozenset(both))  # fmt: skip


def _encode(subset: BinarySubset) -> list[Any]:
    groups = [[g.candidate, g.start, g.end, sorted(g.names)] for g in subset.groups]
    return [groups, subset.named, literal_rows(subset.candidates), literal_rows(subset.guards),
            sorted(subset.both)]  # fmt: skip


_NONE: frozenset[int] = frozenset()  # most groups use no named rule


def _decode(value: list[Any], mgc: bytes) -> BinarySubset:
    groups, named, candidates, guards, both = value
    return BinarySubset(
        mgc,
        tuple(Group(int(c), int(s), int(e), frozenset(int(n) for n in names) if names else _NONE)
              for c, s, e, names in groups),
        tuple((int(a), int(b)) for a, b in named),
        conditions_from(candidates),
        conditions_from(guards),
        frozenset(int(b) for b in both),
    )  # fmt: skip


class BinaryMagic:
    """Copies of libmagic's database for the sets of binary rules heads may match."""

    def __init__(self, subset: BinarySubset, check: Any, matching: Any,
                 build_after: int = BUILD_AFTER, max_copies: int = MAX_COPIES) -> None:  # fmt: skip
        self.subset, self._check, self._matching = subset, check, matching
        self.program, self.guard_program = compiled(subset.candidates), compiled(subset.guards)
        self.build_after, self.max_copies = build_after, max_copies
        self.copies: dict[tuple[int, ...], Any] = {}
        self._seen: dict[tuple[int, ...], int] = {}
        self._heads = 0

    def key(self, head: bytes) -> tuple[int, ...] | None:
        """The candidates ``head`` may match, or None when a guard may match (full
        database)."""
        if self._check(self.guard_program, head):
            return None
        key = self._matching(self.program, head)
        if self.subset.both and not binary_pass_only(head):  # the text pass may try them
            return tuple(sorted(self.subset.both.union(key)))
        return tuple(key)

    def handle(self, head: bytes, ascii_text: bool | None = None) -> Any | None:
        """The copy that gives the full database's answer for a non-ASCII ``head``, or None
        (no copy for its set yet: the full database types it). ``ascii_text``: what
        ``is_text(head)`` gave, if the caller knows it."""
        if not head or (is_text(head) if ascii_text is None else ascii_text):
            return None
        key = self.key(head)
        if key is None:
            return None
        self._heads += 1
        if self._heads % _AGE_EVERY == 0:
            self._seen = {k: n // 2 for k, n in self._seen.items() if n > 1}
        seen = self._seen[key] = self._seen.get(key, 0) + 1
        copy = self.copies.get(key)
        if (
            copy is None
            and seen >= self.build_after
            and (room_for(self.copies, self._seen, seen, self.max_copies))
        ):
            copy = self.copies[key] = open_copy(self.subset.database(key))
        return copy


def samples() -> list[bytes]:
    """Binary heads the copies must type as the full database does before use."""
    rng = random.Random(11)
    noise = bytes(rng.randrange(256) for _ in range(2048))
    return [
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + noise,
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\x00\x00\x01\x00\x08\x02" + noise,
        b"GIF89a\x10\x00\x10\x00\x80\x00\x00" + noise,
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + noise,
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + noise,
        b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00" + noise,
        b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + noise,
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + noise,
        b"SQLite format 3\x00" + noise,
        noise,
        b"\x00\x01<!DOCTYPE svg PUBLIC>\x00" + noise,  # both passes' rule, binary pass
        bytes(4096),
        "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e\n".encode() * 20,
    ]


def load() -> tuple[BinaryMagic | None, str]:
    """The binary copies, or None and why not."""
    mgc, why = usable_database()
    if mgc is None:
        return None, why
    import magic

    from . import _magic_native

    try:
        subset = kept("binary", mgc, build, _encode, _decode)
    except ValueError as exc:
        return None, f"off: {exc}"
    typer = BinaryMagic(subset, _magic_native.possible, _magic_native.matching)
    keys = {h: typer.key(h) for h in samples() if not is_text(h)}
    union = sorted(set().union(*(k for k in keys.values() if k is not None)))
    copy = open_copy(subset.database(union))  # holds every sample's rules: one copy
    full = magic.Magic(mime=True)
    for head, key in keys.items():
        if key is not None and copy.from_buffer(head) != full.from_buffer(head):
            return None, "off: a binary copy answered a sample differently"
    return typer, (
        f"on: {len(subset.candidates)} of {len(subset.groups)} rules left out of binary"
        f" copies when a head cannot match them; {len(subset.guards)} guard rules checked"
    )
