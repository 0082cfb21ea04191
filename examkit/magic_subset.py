"""libmagic's answer for plain ASCII text, from a smaller copy of its own database.

libmagic types a text head by trying hundreds of rules on it (``search`` and ``regex``
over the whole head: 1-4 ms each time). Most of them look for a literal that the head
does not contain. This module reads libmagic's compiled database (``magic.mgc``) and
writes a copy without the top-level rules that can be shown *not to match* a given kind
of head, plus the condition (the rules' literals) under which that showing holds:

- a head is eligible when every byte is one libmagic counts as ASCII text (BEL..CR,
  ESC, space..``~``). libmagic's text pass then sees the head itself (its conversion to
  UTF-8 changes no byte), and its binary pass sees it too;
- a rule is left out of the copy when its top-level test is a ``string``, ``search`` or
  ``regex`` equality at a fixed offset, with only known flags, and a set of literals can
  be read from its pattern without which it cannot match (every whitespace-separated
  part of a string; the literal runs of a regular expression outside optional and
  alternative parts, or each alternative's). Bytes are compared case-folded, which only
  lets more heads through to the full database;
- so is an integer equality (byte, short, long in any byte order) at a fixed offset: it
  needs its value's bytes there, those its AND mask keeps whole if it has one (libmagic
  compares sign-extended values, and a head too short for the type never matches); and
  an unsigned ``<`` of at most 256 needs zero bytes above the lowest. Most such values
  hold a byte that text never has;
- a rule whose top-level test is *quiet* (no description, MIME type, Apple type or
  extensions of its own: matching it changes nothing unless a continuation matches too)
  and only compares needs, besides its own literals, those of one of its first-level
  continuations, when each of them has literals to read (anywhere in the head when its
  offset is relative) (``rule_condition``);
- a rule whose literals hold a byte that an eligible head never has is left out with
  no check; the others are checked on every head (``possible``), and one that *may*
  match sends the head to the full database.

An ASCII head that some left-out rule may match goes to a *wide* copy that holds the
left-out rules such heads most often may match, when it holds every one this head may
match (``TextMagic.copy_for``): the same argument, with those rules put back.

The rules kept because their literals are too short (in most text) cost most of the
copy's time. The weak ``search``/``regex`` ones are *keyed* (then, while bits are left,
quiet rules whose continuations were read): ``which`` gives the set of them that may
match a head, and a further copy without the rest types it (``TextMagic`` makes copies
for the sets it sees most, and uses one holding every rule of the set).

An ``indirect`` test runs the first set of rules again on the head's bytes from its
offset, where the left-out rules' literals were not looked for. A kept rule that reaches
one (itself or through the named rules it ``use``s) is therefore checked like a left-out
rule: a head it may match goes to the full database (``reaching_indirect``); one with no
condition to check makes the copy refuse to build.

A rule whose top-level test fails has no other effect in libmagic (its continuations are
skipped, nothing is printed or remembered), so for a head none of whose left-out rules
can match, the copy gives the answer the full database gives. The test suite compares
the two on thousands of real and crafted heads, and a built copy must answer a sample
set exactly as the full database does before it is used.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import re
import struct
import sys
import tempfile
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from .magic_cache import conditions_from, kept, literal_rows

RECORD = 376  # sizeof(struct magic) in databases of format 18 (file 5.4x)
MAGIC_NUMBER = 0xF11E041C
FORMAT = 18

# struct magic fields used here
_TYPE_STRING, _TYPE_REGEX, _TYPE_SEARCH = 5, 17, 20
_TYPE_INDIRECT = 41
# Integer types whose size libmagic checks against the head before comparing (mget):
# type -> (bytes, byte order); "native" ones are in this machine's order, as the
# database is.
_INTEGERS: dict[int, tuple[int, typing.Literal["little", "big"]]] = {
    1: (1, sys.byteorder),  # byte
    2: (2, sys.byteorder),  # short
    4: (4, sys.byteorder),  # long
    7: (2, "big"),  # beshort
    8: (4, "big"),  # belong
    10: (2, "little"),  # leshort
    11: (4, "little"),  # lelong
}
_BINTEST, _TEXTTEST, _UNSIGNED = 0x20, 0x40, 0x08
_ANNOTATIONS = (160, 224, 304, 312)  # first bytes of desc, mimetype, apple and ext
BINTEST, TEXTTEST = _BINTEST, _TEXTTEST  # the pass a top-level rule is tried in
TYPE_NAME, TYPE_USE = 45, 46  # a named rule; a call of one
_W_COMPACT, _W_OPTIONAL, _TRIM = 0x1, 0x2, 0x2000
# Flags that change nothing but which heads match (offset start, text/binary test, line
# count, trim, full word, case, whitespace); an entry with any other flag is kept.
_KNOWN_FLAGS = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x800 | 0x2000 | 0x4000

# Bytes libmagic's encoding check counts as ASCII text (encoding.c, text_chars 'T').
TEXT_BYTES = bytes([*range(7, 14), 27, *range(32, 127)])
_WHITESPACE = b" \t\n\v\f\r"  # C isspace(), as bytes.split() splits

# Modes of a literal
ANYWHERE, AT_OFFSET, LINE_START = 0, 1, 2

# A rule that can match without a literal of this many bytes searched anywhere (or of
# _WEAK_AT bytes at a fixed offset) is kept in the copy, for libmagic to try: short
# literals are in most text ("char" is in three heads out of four of the benchmark's), so
# checking them would send most heads to the full database.
_WEAK = 5
_WEAK_AT = 3


class Literal(NamedTuple):  # thousands are made as the cached subsets are loaded
    mode: int
    offset: int
    data: bytes  # case-folded (ASCII lower case)


# One rule's condition: it may match only if, for some clause, every literal is found.
Condition = tuple[tuple[Literal, ...], ...]


@dataclass(frozen=True)
class Entry:
    index: int
    cont_level: int
    flag: int
    reln: int
    type: int
    offset: int
    str_flags: int  # for integer types, the low half of the mask
    value: bytes
    mask_op: int = 0
    mask: int = 0  # integer types: mask applied before comparing (0: none)
    quiet: bool = False  # no description, MIME type, Apple type or extensions of its own


def parse(mgc: bytes) -> tuple[list[Entry], int, int]:
    """Entries of a compiled database and the sizes of its two sets; ValueError if the
    file is not a format-18 database in this machine's byte order."""
    if len(mgc) < RECORD or len(mgc) % RECORD:
        raise ValueError("not a compiled magic database of 376-byte records")
    number, version, n0, n1 = struct.unpack_from("<4I", mgc, 0)
    if number != MAGIC_NUMBER or version != FORMAT:
        raise ValueError(f"magic database format {version}, not {FORMAT}")
    if (1 + n0 + n1) * RECORD != len(mgc):
        raise ValueError("magic database size does not match its header")
    entries = []
    for i in range(n0 + n1):
        base = RECORD * (i + 1)
        cont, flag, _factor, reln, vallen, typ = struct.unpack_from("<HBBBBB", mgc, base)
        mask_op = mgc[base + 9]
        offset, _in_offset, _line, _count, str_flags = struct.unpack_from("<iiIII", mgc, base + 12)
        (mask,) = struct.unpack_from("<Q", mgc, base + 24)
        if typ in _INTEGERS:
            value = mgc[base + 32 : base + 40]  # value.q, in this machine's order
        else:
            value = mgc[base + 32 : base + 32 + min(vallen, 128)]
        quiet = not any(mgc[base + at] for at in _ANNOTATIONS)
        entries.append(Entry(i, cont, flag, reln, typ, offset, str_flags, value, mask_op, mask,
                             quiet))  # fmt: skip
    return entries, n0, n1


Item = tuple[Any, ...]  # ("lit", bytes, anchored) or ("alt", branches)


class _Unknown(Exception):
    """A pattern this reader does not follow: the rule is kept."""


_INTERVAL = re.compile(rb"\{([0-9]*)(,[0-9]*)?\}")
# Escaped characters that stand for themselves (not \w, \b, \<, \`, \' ..., GNU operators).
_PUNCT_ESCAPES = frozenset(b'.[]()*+?{}|^$\\/-"=,;:!@#%&~_ ')


def _sequence(p: bytes, i: int, nested: bool) -> tuple[list[list[Item]], int]:
    """Branches (split at ``|``) of a POSIX extended regular expression from ``i``, each
    a list of required items: ("lit", bytes, anchored) or ("alt", branches)."""
    branches: list[list[Item]] = [[]]
    run = bytearray()
    anchored = False

    def flush() -> None:
        nonlocal run, anchored
        if run:
            branches[-1].append(("lit", bytes(run), anchored))
        run = bytearray()
        anchored = False

    n = len(p)
    while i < n:
        c = p[i]
        if c == 0x29:  # )
            if not nested:
                raise _Unknown
            flush()
            return branches, i + 1
        if c == 0x7C:  # |
            flush()
            branches.append([])
            i += 1
            continue
        if c == 0x5E:  # ^ (start of a line: REG_NEWLINE)
            flush()
            anchored = True
            i += 1
            continue
        if c == 0x24:  # $
            flush()
            i += 1
            continue
        kind: str
        value: Any = None
        if c == 0x5C:  # backslash
            if i + 1 >= n or p[i + 1] not in _PUNCT_ESCAPES:
                raise _Unknown  # \w, \b, \< ... (GNU extensions) or a trailing backslash
            kind, value, j = "ch", p[i + 1], i + 2
        elif c == 0x5B:  # [ ... ]
            k = i + 1
            if k < n and p[k] == 0x5E:
                k += 1
            if k < n and p[k] == 0x5D:
                k += 1
            while k < n and p[k] != 0x5D:
                if p[k] == 0x5B and k + 1 < n and p[k + 1] in b":=.":
                    end = p.find(bytes([p[k + 1], 0x5D]), k + 2)
                    if end < 0:
                        raise _Unknown
                    k = end + 2
                else:
                    k += 1
            if k >= n:
                raise _Unknown
            kind, j = "any", k + 1
        elif c == 0x28:  # (
            inner, j = _sequence(p, i + 1, True)
            kind, value = "alt", inner
        elif c == 0x2E:  # .
            kind, j = "any", i + 1
        elif c in b"*+?{" or c >= 0x80:
            raise _Unknown
        else:
            kind, value, j = "ch", c, i + 1
        optional = required_once = False
        if j < n and p[j] in b"*?":
            optional, j = True, j + 1
        elif j < n and p[j] == 0x2B:  # +
            required_once, j = True, j + 1
        elif j < n and p[j] == 0x7B:  # {
            m = _INTERVAL.match(p, j)
            if not m:
                raise _Unknown
            optional = m.group(1) in (b"", b"0")
            required_once = not optional
            j = m.end()
        if j < n and p[j] in b"*+?{":
            raise _Unknown
        if kind == "ch":
            if optional:
                flush()
            else:
                run.append(value)
                if required_once:
                    flush()
        else:
            flush()
            if kind == "alt" and not optional:
                branches[-1].append(("alt", value))
        i = j
    if nested:
        raise _Unknown
    flush()
    return branches, i


def _clauses(branches: list[list[Item]], offset: int, limit: int = 64) -> list[list[Literal]]:
    """Expand required items into clauses (OR of ANDs), at most ``limit``; an alternative
    that would exceed it is dropped from the requirement (fewer literals: still sound)."""
    out: list[list[Literal]] = []
    for items in branches:
        clauses: list[list[Literal]] = [[]]
        for item in items:
            if item[0] == "lit":
                _kind, data, anchored = item
                if anchored and offset:
                    lit = Literal(ANYWHERE, 0, data.lower())  # ^ also matches at the offset
                else:
                    lit = Literal(LINE_START if anchored else ANYWHERE, 0, data.lower())
                clauses = [[*c, lit] for c in clauses]
            else:
                inner = _clauses(item[1], offset, limit)
                if not inner or any(not c for c in inner) or len(clauses) * len(inner) > limit:
                    continue
                clauses = [[*c, *d] for c in clauses for d in inner]
        out.extend(clauses)
    return out


def regex_condition(pattern: bytes, offset: int = 0) -> Condition | None:
    """Literals without which an extended regular expression cannot match; None when
    the pattern is not understood or needs none."""
    try:
        branches, _ = _sequence(pattern, 0, False)
    except _Unknown:
        return None
    clauses = _clauses(branches, offset)
    if not clauses or any(not c for c in clauses):
        return None
    return tuple(tuple(c) for c in clauses)


_NOT_FIRST = re.compile(rb"\^\[\^([^][\\^-]+)\]\.\*\$")


def negated_regex_condition(pattern: bytes, offset: int) -> Condition | None:
    r"""What a negated ``^[^SET].*$`` needs (FORTRAN's ``!^[^Cc \t].*$``: every line starts
    with C or a blank). libmagic compiles regular expressions with ``REG_NEWLINE``, so the
    pattern matches, and the negated test fails, as soon as the first line starts with a
    byte outside SET (a newline starts an empty line, a NUL ends the C string): the test
    can hold only when the head starts with a byte of SET, a newline or a NUL. None for
    any other pattern, or one not read from the start."""
    found = _NOT_FIRST.fullmatch(pattern)
    if found is None or offset != 0:
        return None
    firsts = sorted({b for b in found.group(1).lower()} | {0x0A, 0x00})
    return tuple((Literal(AT_OFFSET, 0, bytes([b])),) for b in firsts)


def string_condition(entry: Entry) -> Condition | None:
    """Literals a ``string`` or ``search`` test needs: its whitespace-separated parts when
    whitespace is compacted or trimmed (``W``, ``w``, ``T``), else the whole value; a
    ``string`` test's first part at its offset."""
    value = entry.value
    if not value:
        return None
    if entry.str_flags & (_W_COMPACT | _W_OPTIONAL | _TRIM):  # parts: a looser condition
        parts = value.split()  # bytes.split(): on runs of _WHITESPACE
        leading_space = value[0] in _WHITESPACE
    else:
        parts, leading_space = [value], False
    if not parts:
        return None
    literals = [Literal(ANYWHERE, 0, s.lower()) for s in parts]
    if entry.type == _TYPE_STRING and not leading_space:
        literals[0] = Literal(AT_OFFSET, entry.offset, parts[0].lower())
    return (tuple(literals),)


def integer_condition(entry: Entry) -> Condition | None:
    """The bytes an integer test needs at its offset, in the type's byte order: for ``=``,
    its value's low bytes (libmagic compares sign-extended values, so the low bytes must be
    equal), only those its mask keeps whole when it has an AND mask; for an unsigned ``<``
    of at most 256, zero bytes above the lowest. A head too short for the type never
    matches. None for other operators and masks."""
    size, order = _INTEGERS[entry.type]
    whole = (1 << (8 * size)) - 1
    value = int.from_bytes(entry.value[:8], sys.byteorder) & whole
    if entry.mask_op:  # OR, XOR, arithmetic, inverted or indirect masks: not read
        return None
    mask = entry.mask & whole if entry.mask else whole
    if entry.reln == ord("<") and entry.flag & _UNSIGNED and not entry.mask and value <= 256:
        mask, value = whole & ~0xFF, 0
    elif entry.reln != ord("="):
        return None
    data, kept = value.to_bytes(size, order), mask.to_bytes(size, order)
    literals, start = [], None
    for k in range(size + 1):
        if k < size and kept[k] == 0xFF:
            start = k if start is None else start
        elif start is not None:
            literals.append(Literal(AT_OFFSET, entry.offset + start, data[start:k].lower()))
            start = None
    return (tuple(literals),) if literals else None


def entry_condition(entry: Entry) -> Condition | None:
    """The condition of a top-level rule that may be left out, or None to keep it."""
    test_bits = entry.flag & (_BINTEST | _TEXTTEST)
    if entry.cont_level or not test_bits:
        return None  # a rule in both passes sees the same bytes in each: one condition
    if entry.flag & ~(_BINTEST | _TEXTTEST | _UNSIGNED):
        return None  # indirect or relative offsets, offsets from the end
    if entry.offset < 0:
        return None
    if entry.type in _INTEGERS:
        return integer_condition(entry)
    if entry.str_flags & ~_KNOWN_FLAGS:
        return None  # unknown flags
    if entry.reln == ord("!") and entry.type == _TYPE_REGEX:
        return negated_regex_condition(entry.value.split(b"\0", 1)[0], entry.offset)
    if entry.reln != ord("="):
        return None
    if entry.type == _TYPE_REGEX:  # compiled as a C string: up to its first NUL
        return regex_condition(entry.value.split(b"\0", 1)[0], entry.offset)
    if entry.type in (_TYPE_STRING, _TYPE_SEARCH):
        return string_condition(entry)
    return None


# Tests that only compare (no call, no indirection, no default): a quiet one that matches
# has no effect of its own.
_PLAIN_TYPES = frozenset({*_INTEGERS, _TYPE_STRING, _TYPE_REGEX, _TYPE_SEARCH})
_MAX_CLAUSES = 64


def continuation_condition(entry: Entry) -> Condition | None:
    """Literals a continuation's test needs in the head: at its offset when that is fixed,
    anywhere when it is relative or indirect; None when not read."""
    if entry.type not in _PLAIN_TYPES:
        return None
    fixed = not entry.flag & ~(_BINTEST | _TEXTTEST | _UNSIGNED) and entry.offset >= 0
    flat = dataclasses.replace(entry, cont_level=0, offset=entry.offset if fixed else 0,
                               flag=(entry.flag & _UNSIGNED) | _BINTEST | _TEXTTEST)  # fmt: skip
    condition = entry_condition(flat)
    if condition is None or fixed:
        return condition
    return tuple(tuple(Literal(ANYWHERE, 0, lit.data) for lit in clause) for clause in condition)


def rule_condition(entries: Sequence[Entry], start: int, end: int) -> Condition | None:
    """What the rule ``entries[start:end]`` needs to have any effect on the answer.

    A quiet top-level test (nothing of its own to print: no description, MIME type, Apple
    type or extensions) that matches changes nothing unless one of its first-level
    continuations matches too (deeper ones are tried only under those). When it only
    compares and each of those continuations has a readable condition, that is its own
    condition (if any) and one of theirs; otherwise its own (``entry_condition``)."""
    first, top = entries[start], entry_condition(entries[start])
    if first.cont_level or not first.quiet or first.type not in _PLAIN_TYPES:
        return top
    firsts = [continuation_condition(e) for e in entries[start + 1 : end] if e.cont_level == 1]
    if not firsts:
        return top
    either: list[tuple[Literal, ...]] = []
    for condition in firsts:
        if condition is None:
            return top
        either.extend(condition)
    combined = [c for t in (top or ((),)) for o in either if _consistent(c := (*t, *o))]
    return tuple(combined) if len(combined) <= _MAX_CLAUSES else top  # (): never


def _consistent(clause: tuple[Literal, ...]) -> bool:
    """Whether one head can hold every literal of a clause: those at fixed offsets must
    agree where they overlap (``0 string G9B`` and ``>1 uleshort 11`` never do)."""
    at: dict[int, int] = {}
    for lit in clause:
        if lit.mode == AT_OFFSET:
            for k, byte in enumerate(lit.data, lit.offset):
                if at.setdefault(k, byte) != byte:
                    return False
    return True


def _in_text(condition: Condition) -> Condition:
    """The clauses of a condition that an ASCII head can satisfy."""
    return tuple(c for c in condition if not any(map(_never_in_text, c)))


def _never_in_text(literal: Literal) -> bool:
    return bool(literal.data.translate(None, TEXT_BYTES))


def _weak(condition: Condition) -> bool:
    """Whether a condition holds on most text (short literals searched anywhere)."""
    return not all(
        any(len(lit.data) >= (_WEAK_AT if lit.mode == AT_OFFSET else _WEAK) for lit in clause)
        for clause in condition
    )


@dataclass(frozen=True)
class Subset:
    """The smaller database and the conditions of the rules it leaves out.

    ``keyed`` rules are weak ``search``/``regex`` rules the copy keeps (their literals are
    too common to send a head to the full database) but which cost most of the copy's
    time: a further copy may leave out those that cannot match a given head
    (``database(key)``, with bit i of ``key`` set for each keyed rule i it keeps).
    """

    # (k, records) in order: k >= 0 keyed rule k; -1 in every copy; k <= -2 the left-out
    # rule of condition -2 - k (in a wide copy only)
    chunks: tuple[tuple[int, int, int], ...]  # (k, start, end): records mgc[start:end]
    mgc: bytes  # the compiled database (one object: forked workers copy none of it)
    n0: int  # top-level records: the named rules follow them, kept as they are
    conditions: tuple[Condition, ...]
    keyed: tuple[Condition, ...]
    left_out: int  # rules left out (checked or never possible)
    kept: int  # top-level rules in the copy
    guards: frozenset[int] = frozenset()  # conditions of rules reaching an indirect test

    @property
    def every_key(self) -> int:
        return (1 << len(self.keyed)) - 1

    def database(self, key: int = -1, extra: frozenset[int] = frozenset()) -> bytes:
        """The copy with the keyed rules in ``key`` (all of them by default), and the
        left-out rules of the conditions in ``extra``."""

        def wanted(k: int) -> bool:
            return k == -1 or (k >= 0 and bool(key >> k & 1)) or (k <= -2 and -2 - k in extra)

        with memoryview(self.mgc) as mgc:  # slices of it are not copies: one join is
            parts = [mgc[a:b] for k, a, b in self.chunks if wanted(k)]
            named = mgc[RECORD * (1 + self.n0) :]
            count = sum(len(p) for p in parts) // RECORD
            header = bytearray(mgc[:RECORD])
            struct.pack_into("<2I", header, 8, count, len(named) // RECORD)
            joined = b"".join([header, *parts, named])
            for part in (*parts, named):
                part.release()
            return joined


MAX_KEYED = 62  # keyed rules (bits of the compiled check's answer)
_KEYED_TYPES = (_TYPE_SEARCH, _TYPE_REGEX)


def rule_groups(entries: Sequence[Entry], start: int, end: int) -> list[tuple[int, int]]:
    """(first, end) of each top-level rule with its continuations, in ``start..end``."""
    out, i = [], start
    while i < end:
        j = i + 1
        while j < end and entries[j].cont_level > 0:
            j += 1
        out.append((i, j))
        i = j
    return out


def rule_name(entry: Entry) -> bytes:
    """The name a ``name`` rule gives or a ``use`` rule calls (``^``: the byte-swapped use)."""
    return entry.value.split(b"\0", 1)[0].lstrip(b"^")


def reaching_indirect(entries: Sequence[Entry], n0: int, n1: int) -> set[int]:
    """Top-level rules of the first set with an ``indirect`` test among their own or those
    of the named rules they ``use`` (at any depth). Such a test runs the whole first set
    again on the head's bytes from its offset, where a left-out rule's literals were not
    looked for: a head such a rule may match must go to the full database."""

    named = {rule_name(entries[i]): entries[i:j] for i, j in rule_groups(entries, n0, n0 + n1)
             if entries[i].type == TYPE_NAME}  # fmt: skip
    memo: dict[bytes, bool] = {}

    def reaches(group: Sequence[Entry], seen: frozenset[bytes]) -> bool:
        for entry in group:
            if entry.type == _TYPE_INDIRECT:
                return True
            if entry.type == TYPE_USE:
                used = rule_name(entry)
                if used not in memo and used not in seen and used in named:
                    memo[used] = reaches(named[used], seen | {used})
                if memo.get(used, False):
                    return True
        return False

    return {i for i, j in rule_groups(entries, 0, n0) if reaches(entries[i:j], frozenset())}


@functools.lru_cache(maxsize=1)
def analyse(mgc: bytes) -> tuple[tuple[Entry, ...], int, int, frozenset[int]]:
    """``parse()`` and ``reaching_indirect()`` of a database, once per process: the text
    and the binary subsets are built from the same ones (0.06 s of each build)."""
    entries, n0, n1 = parse(mgc)
    return tuple(entries), n0, n1, frozenset(reaching_indirect(entries, n0, n1))


def build(mgc: bytes) -> Subset:
    """The copy of a compiled database for ASCII-text heads (see the module docstring)."""
    entries, n0, _n1, indirect = analyse(mgc)
    chunks: list[tuple[int, int, int]] = []
    conditions: list[Condition] = []
    keyable: list[tuple[int, int, Condition]] = []  # (rank, chunk, condition)
    guards: set[int] = set()
    left_out = kept = 0
    for i, j in rule_groups(entries, 0, n0):
        top = entry_condition(entries[i])
        condition = top if i in indirect else rule_condition(entries, i, j)
        records = (RECORD * (i + 1), RECORD * (j + 1))
        if condition is not None:
            possible = _in_text(condition)
            if not possible:
                left_out += 1
                continue
            if top is not None and not _weak(_in_text(top)):  # strong: checked, left out
                if i in indirect:  # never in a wide copy either
                    guards.add(len(conditions))
                chunks.append((-2 - len(conditions), *records))
                conditions.append(possible)
                left_out += 1
                continue
            if i in indirect:  # kept, but where it may match the full database types
                guards.add(len(conditions))
                conditions.append(possible)
            elif entries[i].type in _KEYED_TYPES:  # weak searches: the costliest first
                keyable.append((0, len(chunks), possible))
            elif condition != top:  # a quiet test whose continuations are read
                keyable.append((1, len(chunks), possible))
        elif i in indirect:
            raise ValueError(f"rule {i} reaches an indirect test and has no condition to check")
        chunks.append((-1, *records))
        kept += 1
    keyed: list[Condition] = []
    for _rank, at, possible in sorted(keyable, key=lambda k: k[:2])[:MAX_KEYED]:
        chunks[at] = (len(keyed), *chunks[at][1:])
        keyed.append(possible)
    return Subset(tuple(chunks), mgc, n0, tuple(conditions), tuple(keyed),
                  left_out, kept, frozenset(guards))  # fmt: skip


def _encode(subset: Subset) -> list[Any]:
    conditions, keyed = literal_rows(subset.conditions), literal_rows(subset.keyed)
    return [subset.chunks, subset.n0, conditions, keyed, subset.left_out, subset.kept,
            sorted(subset.guards)]  # fmt: skip


def _decode(value: list[Any], mgc: bytes) -> Subset:
    chunks, n0, conditions, keyed, left_out, kept_, guards = value
    return Subset(tuple((int(k), int(a), int(b)) for k, a, b in chunks), mgc, int(n0),
                  conditions_from(conditions), conditions_from(keyed), int(left_out),
                  int(kept_), frozenset(int(g) for g in guards))  # fmt: skip


def is_text(head: bytes) -> bool:
    """Whether every byte of a head is ASCII text to libmagic (``isascii`` first: a binary
    head fails it within a few bytes, where ``translate`` copies most of it, 12 µs)."""
    return bool(head) and head.isascii() and not head.translate(None, TEXT_BYTES)


def _found(lit: Literal, folded: bytes) -> bool:
    if lit.mode == AT_OFFSET:
        return folded.startswith(lit.data, lit.offset)
    if lit.mode == ANYWHERE:
        return lit.data in folded
    return folded.startswith(lit.data) or b"\n" + lit.data in folded


def possible(conditions: Sequence[Condition], head: bytes) -> bool:
    """Whether some left-out rule may match ``head`` (reference version, in Python)."""
    folded = head.lower()
    return any(all(_found(lit, folded) for lit in clause) for cond in conditions for clause in cond)


def which(conditions: Sequence[Condition], head: bytes) -> int:
    """Bit i set when rule i may match ``head`` (reference version, in Python)."""
    folded = head.lower()
    return sum(
        1 << i
        for i, cond in enumerate(conditions)
        if any(all(_found(lit, folded) for lit in clause) for clause in cond)
    )


def pack(conditions: Sequence[Condition]) -> bytes:
    """The conditions in the form the compiled checker reads: per rule a count of
    clauses, per clause a count of literals, per literal mode, offset, length, bytes.
    A clause's literals at fixed offsets come first (its key, and the cheapest to
    compare), then the others longest first (the least likely to be found)."""
    out = bytearray(struct.pack("<I", len(conditions)))
    for cond in conditions:
        out += struct.pack("<H", len(cond))
        for clause in cond:
            out += struct.pack("<H", len(clause))
            for lit in sorted(clause, key=lambda lit: (lit.mode != AT_OFFSET, -len(lit.data))):
                out += struct.pack("<BIH", lit.mode, lit.offset, len(lit.data)) + lit.data
    return bytes(out)


def compiled(conditions: Sequence[Condition]) -> Any:
    """The conditions as the compiled check takes them: packed, then read once into its
    index (``_magic_native.Program``: a binary head is checked in ~11 microseconds instead
    of ~61). Only called where ``_magic_native`` is built (``unavailable()``)."""
    from ._magic_native import Program

    return Program(pack(conditions))


# Heads the copy must type as the full database does before it is used (one per kind of
# text rule: scripts, markup, sources, mail, documents, data).
SAMPLES = (
    b"#!/bin/sh\necho hello\n",
    b"#! /usr/bin/env python3\nimport os\nprint(os.getcwd())\n",
    b"<!DOCTYPE html>\n<html><head><title>t</title></head><body>x</body></html>\n",
    b'<?xml version="1.0" encoding="UTF-8"?>\n<root><a>1</a></root>\n',
    b'#include <stdio.h>\nint main(void) { printf("hi\\n"); return 0; }\n',
    b"From: a@example.org\nTo: b@example.org\nSubject: hello\n\nbody\n",
    b"\\documentclass{article}\n\\begin{document}\nx\n\\end{document}\n",
    b"%!PS-Adobe-3.0\n%%Title: t\nshowpage\n",
    b"%PDF-1.4\n1 0 obj\n<< >>\nendobj\n",
    b'{"a": [1, 2, 3], "b": {"c": null}}\n',
    b"name,size,kind\nalpha,1,x\nbeta,2,y\ngamma,3,z\n",
    b'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println(1) }\n',
    b"The quick brown fox jumps over the lazy dog. " * 40,
    b"Lorem ipsum dolor sit amet; a table of characters and charts.\n" * 30,
)


# A further copy is made for a set of keyed rules (see Subset) once this many heads have
# needed that set, up to MAX_COPIES per process (each about 3 MB in libmagic). When all
# are made, a set seen more than twice as often as the least-used copy's replaces it;
# counts are halved every _AGE_EVERY heads, so copies follow what the evidence holds now.
# A head whose set has no copy of its own is typed by the smallest copy holding all of it.
BUILD_AFTER = 2
MAX_COPIES = 8
_AGE_EVERY = 2048
# ASCII heads that some left-out rule may match (program sources, markup) go to a wide copy
# holding the WIDE_RULES left-out rules such heads most often may match, made once WIDE_AFTER
# of them have been seen and again when more than one in ten since then did not fit it, or
# WIDE_MISSES did (after twice as many heads each time, up to 32 x WIDE_AFTER: a copy costs
# ~15 ms to make, a head that does not fit ~1.3 ms in the full database: 119 of a worker's
# 2,215 such heads on the benchmark's small-file image, prose beginning "Table" that the first
# wide copy did not hold, went there; 15 with WIDE_MISSES). Each
# head before it goes to the full database (~3 ms for text): made after 4 rather than 32,
# a worker's half of the bench image's text heads sent 6 there instead of 31, typed in
# 2,206M instructions instead of 2,476M (cachegrind; 1,500 of this machine's text files:
# 7,846M against 8,242M).
WIDE_RULES = 128
WIDE_AFTER = 4
WIDE_MISSES = 8


def open_copy(database: bytes | bytearray) -> Any:
    import magic

    with tempfile.TemporaryDirectory(prefix="examkit-magic-") as folder:
        copy = Path(folder) / "text.mgc"
        copy.write_bytes(database)
        return magic.Magic(mime=True, magic_file=str(copy))  # read whole: the file may go


# libmagic's answer when nothing matched (file_default), and what a rule's own
# "!:mime application/octet-stream" becomes in a one-pass copy, to stay told apart
_DEFAULT = b"application/octet-stream"
_OWN_DEFAULT = b"application/x-examkit-rule-octet-stream"
_MIME_AT, _MIME_LEN = 224, 80  # struct magic's mimetype field
_MIME_TYPE, _NO_CHECK_TEXT = 0x10, 0x20000  # magic.h flags


def one_pass(database: bytes) -> bytearray:
    """The copy with its text rules tried in libmagic's first (binary) pass, after its
    binary rules: each text-only top-level rule moved to the end of the top-level rules,
    with the binary-pass bit set, and every rule's own ``application/octet-stream``
    renamed ``_OWN_DEFAULT``.

    For an ASCII head of two bytes or more, libmagic's second pass (``file_ascmagic``,
    5.44) encodes the head again, converts it to the very same bytes as UTF-8, tries the
    text rules on them in order, and answers ``text/plain`` when none printed a type. A
    one-pass copy opened with ``MAGIC_NO_CHECK_TEXT`` (``OnePassCopy``) tries the same
    rules on the same bytes in the same order, binary rules first, and answers libmagic's
    default where the second pass would say ``text/plain``. A rule of both passes stays
    where it is: not printing in the first pass, it would not print in the second. The
    copies hold no rule that reaches an ``indirect`` test for the heads they type (whose
    count, kept per pass, would then span both). Saves ~19 µs of 33 a head.
    """
    top = RECORD * (1 + struct.unpack_from("<I", database, 8)[0])
    # one bytearray the size of the database, and no other copy of it: a copy is built
    # while a worker runs, and what a worker frees stays in its heap (hashing.py)
    levels, highs = database[RECORD:top:RECORD], database[RECORD + 1 : top : RECORD]
    flags = database[RECORD + 2 : top : RECORD]
    starts = [i for i, (lo, hi) in enumerate(zip(levels, highs, strict=True)) if not lo | hi]
    starts.append(len(levels))
    view, out = memoryview(database), bytearray(len(database))
    out[:RECORD] = view[:RECORD]
    at, text = RECORD, []
    for a, b in itertools.pairwise(starts):
        first, end = RECORD * (1 + a), RECORD * (1 + b)
        if flags[a] & _BINTEST:
            out[at : at + end - first] = view[first:end]
            at += end - first
        else:
            text.append((first, end))
    for first, end in text:
        out[at : at + end - first] = view[first:end]
        out[at + 2] |= _BINTEST
        at += end - first
    out[at:] = view[top:]
    view.release()
    own = _DEFAULT + b"\0"
    at = out.find(own)
    while at >= 0:
        if (at - _MIME_AT) % RECORD == 0:
            out[at : at + _MIME_LEN] = _OWN_DEFAULT.ljust(_MIME_LEN, b"\0")
        at = out.find(own, at + 1)
    return out


class OnePassCopy:
    """A one-pass copy (``one_pass``) typing ASCII heads as its database would in two
    passes."""

    def __init__(self, database: bytes) -> None:
        import magic

        self._magic = magic
        self.handle = open_copy(one_pass(database))
        magic.magic_setflags(self.handle.cookie, _MIME_TYPE | _NO_CHECK_TEXT)

    def from_buffer(self, head: bytes) -> str:
        """The type of an ASCII-text head (``is_text``); MagicException if libmagic fails."""
        with self.handle.lock:
            answer = self._magic.magic_buffer(self.handle.cookie, head)
        if len(head) < 2:  # libmagic gives up on one byte before either pass
            return str(answer.decode())
        if answer == _DEFAULT:
            return "text/plain"
        return _DEFAULT.decode() if answer == _OWN_DEFAULT else str(answer.decode())


class TextMagic:
    """libmagic with the smaller databases, for the ASCII-text heads the check lets in."""

    def __init__(self, subset: Subset, check: Any, which: Any, build_after: int = BUILD_AFTER,
                 max_copies: int = MAX_COPIES, matching: Any = None) -> None:  # fmt: skip
        self.subset, self._check, self._which = subset, check, which
        self._matching = matching
        self.program, self.keyed_program = compiled(subset.conditions), compiled(subset.keyed)
        self.build_after, self.max_copies = build_after, max_copies
        self.copies: dict[int, Any] = {subset.every_key: OnePassCopy(subset.database())}
        self._seen: dict[int, int] = {}  # heads per set of keyed rules, aged
        self._best: dict[int, int] = {}  # set -> the copy that types it
        self._heads = 0
        self.wide: Any = None  # the copy with the left-out rules heads most often may match
        self.wide_rules: frozenset[int] = frozenset()
        self._often: dict[int, int] = {}  # left-out rule -> uncovered heads that may match it
        self._uncovered = self._missed = 0  # since the wide copy was made
        self._wide_made = 0

    @property
    def handle(self) -> Any:
        """The copy with every keyed rule: right for any head it covers."""
        return self.copies[self.subset.every_key]

    def covers(self, head: bytes) -> bool:
        """Whether the smaller database gives the full one's answer for ``head``."""
        return is_text(head) and not self._check(self.program, head)

    def key(self, head: bytes) -> int:
        """The keyed rules that may match ``head``, as bits."""
        return int(self._which(self.keyed_program, head))

    def from_buffer(self, head: bytes) -> str:
        """The type of a covered head, from a copy holding every keyed rule it may match."""
        return str(self._copy(self.key(head)).from_buffer(head))

    def copy_for(self, head: bytes, ascii_text: bool | None = None) -> Any | None:
        """A copy that gives the full database's answer for ``head``, or None. A covered head:
        a keyed copy. Another ASCII head: the wide copy, if it holds every left-out rule the
        head may match and none of them reaches an indirect test. ``ascii_text``: what
        ``is_text(head)`` gave, if the caller knows it."""
        if not (is_text(head) if ascii_text is None else ascii_text):
            return None
        if self._matching is None:
            return self._copy(self.key(head)) if self.covers(head) else None
        extra = self._matching(self.program, head)
        if not extra:
            return self._copy(self.key(head))
        if not self.subset.guards.isdisjoint(extra):
            return None
        for rule in extra:
            self._often[rule] = self._often.get(rule, 0) + 1
        self._uncovered += 1
        fits = self.wide is not None and self.wide_rules.issuperset(extra)
        if not fits:
            self._missed += 1
            due = WIDE_AFTER << min(self._wide_made, 5)  # 4, 8 ... 128 heads: bounded work
            if self._uncovered >= due and (
                self._missed * 10 > self._uncovered or self._missed >= WIDE_MISSES
            ):
                self._make_wide()
                fits = self.wide_rules.issuperset(extra)
        return self.wide if fits else None

    def _make_wide(self) -> None:
        """The wide copy: every keyed rule and the WIDE_RULES left-out rules uncovered heads
        have most often been able to match (counts halved each time it is made)."""
        ranked = sorted(self._often, key=lambda r: -self._often[r])[:WIDE_RULES]
        self.wide_rules = frozenset(ranked)
        self.wide = OnePassCopy(self.subset.database(extra=self.wide_rules))
        self._often = {r: n // 2 for r, n in self._often.items() if n > 1}
        self._uncovered = self._missed = 0
        self._wide_made += 1

    def _copy(self, key: int) -> Any:
        self._heads += 1
        if self._heads % _AGE_EVERY == 0:
            self._seen = {k: n // 2 for k, n in self._seen.items() if n > 1}
        seen = self._seen[key] = self._seen.get(key, 0) + 1
        handle = self.copies.get(key)
        if handle is not None:
            return handle
        if seen >= self.build_after and self._room_for(seen):
            handle = self.copies[key] = OnePassCopy(self.subset.database(key))
            self._best.clear()
            return handle
        best = self._best.get(key)
        if best is None:
            holding = (k for k in self.copies if key & ~k == 0)  # every_key at least
            best = self._best[key] = min(holding, key=lambda k: k.bit_count())
        return self.copies[best]

    def _room_for(self, seen: int) -> bool:
        return room_for(self.copies, self._seen, seen, self.max_copies, self.subset.every_key)


def room_for(copies: dict[Any, Any], counts: dict[Any, int], seen: int, most: int,
             keep: Any = None) -> bool:  # fmt: skip
    """Whether a copy may be made for a set seen ``seen`` times: there is room for one, or
    the least-seen copy (not ``keep``) was seen less than half as often and is dropped."""
    if len(copies) < most:
        return True
    made = [k for k in copies if k != keep]
    if not made:
        return False
    least = min(made, key=lambda k: counts.get(k, 0))
    if seen <= 2 * counts.get(least, 0):
        return False
    del copies[least]  # libmagic's handle is closed when python-magic's goes
    return True


@functools.lru_cache(maxsize=1)
def _read(path: Path, size: int, mtime_ns: int) -> bytes:
    return path.read_bytes()


def database_bytes(path: Path) -> bytes:
    """The compiled database's bytes, read once per process for both kinds of copies."""
    info = path.stat()
    return _read(path, info.st_size, info.st_mtime_ns)


def compiled_database() -> Path | None:
    """The one compiled database libmagic loads by default (``MAGIC`` or its built-in
    path), or None when it also loads rules from source files or several databases."""
    import ctypes

    import magic

    getpath = magic.libmagic.magic_getpath
    getpath.restype, getpath.argtypes = ctypes.c_char_p, [ctypes.c_char_p, ctypes.c_int]
    found: list[Path] = []
    for part in os.fsdecode(getpath(None, 0) or b"").split(":"):
        path = Path(part)
        compiled = path if path.suffix == ".mgc" else path.with_name(path.name + ".mgc")
        if compiled.is_file():
            found.append(compiled)
        elif path.is_file() and _has_rules(path):
            return None  # rules from a source file: not read here
        elif path.is_dir() and any(p.is_file() and _has_rules(p) for p in path.iterdir()):
            return None
    return found[0] if len(found) == 1 else None


def _has_rules(path: Path) -> bool:
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return True
    return any(line.strip() and not line.lstrip().startswith(b"#") for line in lines)


def unavailable() -> str | None:
    """Why the smaller database cannot be used here, or None (cheap: builds nothing)."""
    if os.environ.get("EXAMKIT_FULL_MAGIC"):
        return "EXAMKIT_FULL_MAGIC is set"
    try:
        from . import _magic_native  # noqa: F401
    except ImportError:
        return "examkit._magic_native was not built"
    if compiled_database() is None:
        return "libmagic does not load a single compiled database"
    return None


def usable_database() -> tuple[bytes | None, str]:
    """The compiled database to make copies of, or None and why not (``off: ...``)."""
    reason = unavailable()
    if reason is not None:
        return None, f"off: {reason}"
    path = compiled_database()
    assert path is not None
    try:
        return database_bytes(path), ""
    except OSError as exc:
        return None, f"off: {exc}"


def load() -> tuple[TextMagic | None, str]:
    """The smaller libmagic, or None and why not."""
    mgc, why = usable_database()
    if mgc is None:
        return None, why
    import magic

    from . import _magic_native

    try:
        subset = kept("text", mgc, build, _encode, _decode)
    except ValueError as exc:
        return None, f"off: {exc}"
    full = magic.Magic(mime=True)
    typer = TextMagic(subset, _magic_native.possible, _magic_native.which,
                      matching=_magic_native.matching)  # fmt: skip
    for head in SAMPLES:
        if typer.covers(head) and typer.from_buffer(head) != full.from_buffer(head):
            return None, "off: the smaller database answered a sample differently"
    if not any(typer.covers(head) for head in SAMPLES):
        return None, "off: no sample passed the check"
    extras = {head: _magic_native.matching(typer.program, head) for head in SAMPLES}
    rules = frozenset(r for extra in extras.values() for r in extra) - subset.guards
    wide = OnePassCopy(subset.database(extra=rules))  # as a wide copy for the samples
    for head, extra in extras.items():
        if (
            extra
            and subset.guards.isdisjoint(extra)
            and (wide.from_buffer(head) != full.from_buffer(head))
        ):
            return None, "off: a wide copy answered a sample differently"
    return typer, (
        f"on: {subset.left_out} of {subset.left_out + subset.kept} rules left out for"
        f" ASCII text, {len(subset.conditions)} of them checked on each head;"
        f" {len(subset.keyed)} kept ones checked for further copies"
    )
