"""PDQ hash lists: one 256-bit PDQ perceptual hash (64 hex digits) per line.

Two shapes are read, and may be mixed in one file::

    HEX                      a bare hash
    HEX<TAB>label            the label becomes the entry's name
    HEX,QUALITY[,label]      ThreatExchange ``pdq-photo-hasher`` output (quality 0-100)

Hex may be in any case. Blank lines and lines starting with ``#`` are skipped;
a UTF-8 BOM and CRLF line ends are allowed. Labels are kept as bytes exactly as
in the file (only the line end is removed), whatever their encoding. The
quality, when given, is kept in the entry's metadata as ``pdq_quality``.

Detection: bare 64-hex lines look exactly like a plain SHA-256 list, and
``HEX<TAB>label`` like a SHA-256 list with file names; taking such a known-bad
SHA-256 list for PDQ would silently lose its exact matches. So those shapes
are PDQ only when the file name ends in ``.pdq`` (or with ``--format pdq``);
a ``HEX<TAB>name`` file of another name is claimed by no loader and the import
asks for ``--format``. Lines with the ``,QUALITY`` column are PDQ whatever the
name: no other text format has them.

The file is streamed line by line. A line whose hash is not 64 hex digits, or
whose quality is not an integer 0-100, is reported as malformed (with its line
number, from 1) and the import goes on.
"""

from __future__ import annotations

import re
from pathlib import Path

from examkit.hashformat import BY_HEX_LENGTH, EntrySink, HashSetFormat, strip_bom
from examkit.hookspecs import Register, hookimpl

SUFFIX = ".pdq"
_QUALITY = rb"(?:100|[1-9]?[0-9])"
# a line with the quality column: PDQ whatever the file's name
_SHAPED = re.compile(rb"^[0-9a-fA-F]{64}," + _QUALITY + rb"(?:,.*)?$", re.DOTALL)
# in a ``.pdq`` file bare hashes count too
_ANY = re.compile(rb"^[0-9a-fA-F]{64}(?:\t.*|," + _QUALITY + rb"(?:,.*)?)?$", re.DOTALL)
_SEPARATOR = re.compile(rb"[\t,]")
_HEX64 = re.compile(rb"[0-9a-fA-F]{64}")
_HEX = re.compile(rb"[0-9a-fA-F]+")
_DETECT_LINES = 20


def _first_lines(head: bytes, n: int = _DETECT_LINES) -> list[bytes]:
    """The first ``n`` lines of ``head`` that are neither blank nor comments (line ends removed).

    The last, possibly cut, line of ``head`` is left out unless it is the only one.
    """
    pieces = strip_bom(head).split(b"\n")
    complete = pieces[:-1] or pieces
    lines: list[bytes] = []
    for raw in complete:
        line = raw.removesuffix(b"\r")
        stripped = line.strip()
        if stripped and not stripped.startswith(b"#"):
            lines.append(line)
            if len(lines) >= n:
                break
    return lines


def _mostly(lines: list[bytes], pattern: re.Pattern[bytes]) -> bool:
    """The first line and at least half of the lines match (a bad line may follow)."""
    if not lines or not pattern.match(lines[0]):
        return False
    return 2 * sum(1 for line in lines if pattern.match(line)) >= len(lines)


def _bad_hash_reason(text: bytes) -> str:
    if not text:
        return "no PDQ hash before the separator"
    if not _HEX.fullmatch(text):
        return "PDQ hash is not hex (64 hex digits expected)"
    algorithm = BY_HEX_LENGTH.get(len(text))
    if algorithm is not None and algorithm != "sha256":
        return f"{len(text)} hex digits (an {algorithm.upper()} digest?), a PDQ hash has 64"
    return f"PDQ hash has {len(text)} hex digits, not 64"


class PdqFormat(HashSetFormat):
    name = "pdq"
    description = "PDQ hash list: HEX or HEX<TAB>label per line (also HEX,quality[,label])"
    version = "1"
    priority = 35  # above md5sum (20) and plain (10): bare 64-hex lines are theirs otherwise

    def detect(self, head: bytes, path: Path) -> bool:
        lines = _first_lines(head)
        if _mostly(lines, _SHAPED):
            return True
        return path.name.lower().endswith(SUFFIX) and _mostly(lines, _ANY)

    def read(self, path: Path, sink: EntrySink) -> None:
        with open(path, "rb") as fh:
            for line_no, raw in enumerate(fh, 1):
                line = raw.removesuffix(b"\n").removesuffix(b"\r")
                if line_no == 1:
                    line = strip_bom(line)
                stripped = line.strip()
                if not stripped or stripped.startswith(b"#"):
                    continue
                self._line(line, line_no, sink)

    @staticmethod
    def _line(line: bytes, line_no: int, sink: EntrySink) -> None:
        separator = _SEPARATOR.search(line)
        if separator is None:
            digest, sep, rest = line, b"", b""
        else:
            digest, sep, rest = (
                line[: separator.start()],
                separator.group(),
                line[separator.end() :],
            )
        digest = digest.strip()
        if len(digest) != 64 or not _HEX64.fullmatch(digest):
            sink.malformed(line_no, _bad_hash_reason(digest), line)
            return
        name: bytes | None = None
        meta: dict[str, int] | None = None
        if sep == b"\t":
            name = rest or None
        elif sep == b",":
            quality, comma, label = rest.partition(b",")
            quality = quality.strip()
            if not quality.isdigit() or int(quality) > 100:
                sink.malformed(line_no, "PDQ quality is not an integer 0-100", line)
                return
            meta = {"pdq_quality": int(quality)}
            name = (label or None) if comma else None
        sink.add(pdq=digest.decode("ascii"), name=name, meta=meta, line=line_no)


@hookimpl
def register_hashset_formats(register: Register) -> None:
    register(PdqFormat())
