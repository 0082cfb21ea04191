"""Text hash lists: md5sum/sha1sum/sha256sum, BSD tags, hashdeep, one hash per line.

md5sum-style and plain lists are parsed vectorised (numpy over 16 MiB chunks:
line ends, fixed-width hex decoded through a 64 Ki lookup table); any line the
fast path does not accept is parsed again one by one, so odd lines (escaped
names, CRLF, blanks, other digest widths) are handled or reported, never lost.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from examkit.hashformat import BY_HEX_LENGTH, DIGESTS, EntrySink, HashSetFormat, strip_bom
from examkit.hookspecs import Register, hookimpl

if TYPE_CHECKING:
    import numpy as np

CHUNK = 16 << 20
LINE_SLACK = 1 << 20  # room in each read buffer for the line left over from the last
PARSE_THREADS = 2
_SUM_LINE = re.compile(rb"^(\\?)([0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64}) [ *](.+)$")
_BSD_LINE = re.compile(rb"^(\\?)(MD5|SHA1|SHA256|SHA2-256) ?\((.*)\) ?= ?([0-9a-fA-F]+)$")
_PLAIN_LINE = re.compile(rb"^([0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64})$")
_BSD_ALGO = {b"MD5": "md5", b"SHA1": "sha1", b"SHA256": "sha256", b"SHA2-256": "sha256"}


def _first_lines(head: bytes, n: int = 5) -> list[bytes]:
    lines = []
    for raw in strip_bom(head).split(b"\n")[:-1] or [strip_bom(head)]:
        line = raw.rstrip(b"\r")
        if line.strip() and not line.startswith(b"#"):
            lines.append(line)
        if len(lines) >= n:
            break
    return lines


def _mostly(lines: list[bytes], pattern: re.Pattern[bytes]) -> bool:
    """The first line and at least half of the first lines match (a bad line may follow)."""
    if not lines or not pattern.match(lines[0].strip(b" ")):
        return False
    return 2 * sum(1 for line in lines if pattern.match(line.strip(b" "))) >= len(lines)


def _unescape(name: bytes) -> bytes:
    """GNU coreutils escapes names holding a newline or backslash (line starts with '\\')."""
    out = bytearray()
    i = 0
    while i < len(name):
        if name[i] == 0x5C and i + 1 < len(name):
            nxt = name[i + 1]
            out += {0x6E: b"\n", 0x72: b"\r", 0x5C: b"\\"}.get(nxt, bytes([0x5C, nxt]))
            i += 2
        else:
            out.append(name[i])
            i += 1
    return bytes(out)


@dataclass(frozen=True)
class _Parsed:
    """One chunk, decoded: the well-formed lines' digests and name spans, the other lines."""

    chunk: memoryview
    width: int
    digests: np.ndarray | None
    spans: np.ndarray | None
    bad: list[tuple[int, int, int]]  # (line index, start, end) for the per-line parser
    lines: int


def _chunks(fh: BinaryIO, ring: int) -> Iterator[memoryview]:
    """~CHUNK-byte pieces of the file that end at a line end (a UTF-8 BOM dropped).

    The file is read into ``ring`` buffers in turn, reused (fresh memory costs a page
    fault every 4 KiB): a piece stays valid until ``ring - 1`` more have been taken,
    so the caller holds at most that many. Only the unfinished last line is copied,
    to the start of the next buffer; an unusually long one gets a buffer of its own.
    The next ring buffer is used only once a piece of the last one has been handed
    out (a read that found no line end leaves nothing in its buffer).
    """
    buffers: list[bytearray] = []
    rest = b""
    first = True
    slot = 0
    while True:
        from_ring = len(rest) <= LINE_SLACK
        if not from_ring:
            buf = bytearray(len(rest) + CHUNK)
        else:
            if len(buffers) < ring:
                buffers.append(bytearray(CHUNK + LINE_SLACK))
            buf = buffers[slot % ring]
        buf[: len(rest)] = rest
        end = len(rest) + fh.readinto(memoryview(buf)[len(rest) : len(rest) + CHUNK])
        base = 3 if first and buf.startswith(b"\xef\xbb\xbf") else 0
        first = False
        if end == len(rest):  # the end of the file
            if end > base:
                yield memoryview(buf)[base:end]
            return
        cut = buf.rfind(b"\n", base, end) + 1
        if cut == 0 and end - base < 4 * CHUNK:  # no line end yet: keep reading
            rest = bytes(buf[base:end])
            continue
        if cut == 0:  # a "line" this long is not a hash line: hand it on to be reported
            cut = end
        rest = bytes(buf[cut:end])
        slot += from_ring
        yield memoryview(buf)[base:cut]


class _LineFormat(HashSetFormat):
    """Shared chunked reader: the vectorised fast path plus a per-line fallback."""

    with_names = True

    def read(self, path: Path, sink: EntrySink) -> None:
        with open(path, "rb") as fh, ThreadPoolExecutor(max_workers=PARSE_THREADS) as pool:
            width = self._width(fh.read(65536))
            fh.seek(0)
            # chunks are parsed in threads (numpy releases the GIL) and written in order;
            # plain reads, not a memory map, so the file's pages never count as ours
            window: deque[Future[_Parsed]] = deque()
            line_no = 1
            for chunk in _chunks(fh, PARSE_THREADS + 2):  # at most PARSE_THREADS + 1 held
                window.append(pool.submit(self._parse, chunk, width))
                if len(window) > PARSE_THREADS:
                    line_no = self._emit(window.popleft().result(), line_no, sink)
            while window:
                line_no = self._emit(window.popleft().result(), line_no, sink)

    def _width(self, head: bytes) -> int:
        for line in _first_lines(head, 50):
            m = (_SUM_LINE if self.with_names else _PLAIN_LINE).match(line.strip(b" "))
            if m:
                return len(m.group(2 if self.with_names else 1))
        return 32

    def _parse(self, chunk: memoryview, width: int) -> _Parsed:
        """Split a chunk into lines and decode every well-formed one at once."""
        import numpy as np  # here, not at the top: the scan's workers load every plugin

        from examkit.hexlines import decode_hex, line_bounds

        buf = np.frombuffer(chunk, dtype=np.uint8)
        starts, ends = line_bounds(buf)
        n = len(starts)
        length = ends - starts
        values, ok = decode_hex(chunk, buf, starts, width)
        if self.with_names:
            sep = buf[np.minimum(starts + width, len(buf) - 1)]
            mode = buf[np.minimum(starts + width + 1, len(buf) - 1)]
            ok &= (length > width + 2) & (sep == 32) & ((mode == 32) | (mode == 42))
        else:
            ok &= length == width
        keep = np.flatnonzero(ok)
        digests = spans = None
        if len(keep):
            digests = np.ascontiguousarray(values[keep]).view(f"S{width // 2}")
            if self.with_names:
                spans = np.stack([starts[keep] + width + 2, ends[keep]], axis=1).astype(np.uint64)
        bad = [(int(i), int(starts[i]), int(ends[i])) for i in np.flatnonzero(~ok)]
        return _Parsed(chunk, width, digests, spans, bad, n)

    def _emit(self, parsed: _Parsed, line_no: int, sink: EntrySink) -> int:
        if parsed.digests is not None:
            sink.add_columns(
                {BY_HEX_LENGTH[parsed.width]: parsed.digests.ravel()},
                names_blob=parsed.chunk if self.with_names else None,
                name_spans=parsed.spans,
            )
        for i, start, end in parsed.bad:
            self.read_line(bytes(parsed.chunk[start:end]), line_no + i, sink)
        return line_no + parsed.lines

    def read_line(self, line: bytes, line_no: int, sink: EntrySink) -> None:
        stripped = line.strip()
        if not stripped or stripped.startswith(b"#"):
            return
        m = _SUM_LINE.match(line.strip(b" ")) if self.with_names else None
        if m:
            name = _unescape(m.group(3)) if m.group(1) else m.group(3)
            sink.add(**{BY_HEX_LENGTH[len(m.group(2))]: m.group(2).decode()}, name=name,
                     line=line_no)  # fmt: skip
            return
        m = _PLAIN_LINE.match(stripped)
        if m:
            sink.add(**{BY_HEX_LENGTH[len(m.group(1))]: m.group(1).decode()}, line=line_no)
            return
        sink.malformed(line_no, "not a hash line", line)


class Md5sumFormat(_LineFormat):
    name = "md5sum"
    description = "md5sum / sha1sum / sha256sum output: HEX, two spaces or ' *', file name"
    priority = 20

    def detect(self, head: bytes, path: Path) -> bool:
        return _mostly(_first_lines(head, 20), _SUM_LINE)


class PlainFormat(_LineFormat):
    name = "plain"
    description = "one MD5, SHA-1 or SHA-256 per line, nothing else"
    priority = 10
    with_names = False

    def detect(self, head: bytes, path: Path) -> bool:
        return _mostly([line.strip() for line in _first_lines(head, 20)], _PLAIN_LINE)


class BsdFormat(HashSetFormat):
    name = "bsd"
    description = "BSD-style tagged lines: MD5 (name) = HEX (also SHA1, SHA256)"
    priority = 30

    def detect(self, head: bytes, path: Path) -> bool:
        return _mostly(_first_lines(head, 20), _BSD_LINE)

    def read(self, path: Path, sink: EntrySink) -> None:
        with open(path, "rb") as fh:
            for line_no, raw in enumerate(fh, 1):
                line = strip_bom(raw) if line_no == 1 else raw
                line = line.rstrip(b"\r\n")
                if not line.strip() or line.startswith(b"#"):
                    continue
                m = _BSD_LINE.match(line)
                if not m:
                    sink.malformed(line_no, "not a BSD-style hash line", line)
                    continue
                escaped, tag, name, digest = m.groups()
                algorithm = _BSD_ALGO[tag]
                if len(digest) != 2 * DIGESTS[algorithm]:
                    sink.malformed(line_no, f"{algorithm} digest of wrong length", line)
                    continue
                name = _unescape(name) if escaped else name
                sink.add(**{algorithm: digest.decode()}, name=name, line=line_no)


class HashdeepFormat(HashSetFormat):
    name = "hashdeep"
    description = "hashdeep / md5deep audit files (%%%% HASHDEEP-1.0 header naming the columns)"
    priority = 60

    def detect(self, head: bytes, path: Path) -> bool:
        return strip_bom(head).startswith(b"%%%% HASHDEEP-1.0")

    def read(self, path: Path, sink: EntrySink) -> None:
        columns: list[str] = []
        with open(path, "rb") as fh:
            for line_no, raw in enumerate(fh, 1):
                line = (strip_bom(raw) if line_no == 1 else raw).rstrip(b"\r\n")
                if line.startswith(b"%%%% "):
                    text = line[5:].decode("ascii", "replace").strip()
                    if not text.startswith("HASHDEEP"):
                        columns = [c.strip().lower() for c in text.split(",")]
                    continue
                if not line.strip() or line.startswith(b"##"):
                    continue
                if not columns or columns[-1] != "filename":
                    sink.malformed(line_no, "entry before a column header line")
                    continue
                fields = line.split(b",", len(columns) - 1)
                if len(fields) != len(columns):
                    sink.malformed(line_no, f"expected {len(columns)} fields", line)
                    continue
                row = dict(zip(columns, fields, strict=True))
                size = row.get("size", b"").strip()
                sink.add(
                    md5=row.get("md5", b"").decode("ascii", "replace") or None,
                    sha1=row.get("sha1", b"").decode("ascii", "replace") or None,
                    sha256=row.get("sha256", b"").decode("ascii", "replace") or None,
                    name=row["filename"],
                    size=int(size) if size.isdigit() else None,
                    line=line_no,
                )


@hookimpl
def register_hashset_formats(register: Register) -> None:
    for fmt in (HashdeepFormat(), BsdFormat(), Md5sumFormat(), PlainFormat()):
        register(fmt)
