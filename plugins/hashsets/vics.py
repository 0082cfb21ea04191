"""Project VIC (VICS) JSON hash sets, data model 1.x and 2.0.

A VICS file is an OData JSON document::

    {"odata.metadata": ".../DataModels/1.2.xml#Media", "value": [ {Media}, ... ]}
    {"@odata.context": ".../DataModels/2.0.xml/US/$metadata#Cases",
     "value": [ {"CaseID": ..., "Media": [ {Media}, ... ]}, ... ]}

The document is parsed incrementally: the outer object, the ``value`` array
and any Case's ``Media`` array are walked by hand, and each Media object is
decoded on its own with :meth:`json.JSONDecoder.raw_decode` over a sliding
text buffer. Memory stays at a few chunks plus the largest single Media,
whatever the size of the file.

Each Media becomes one entry: MD5 / SHA1 (and SHA256, PDQ, pHash if present,
as fields or ``AlternativeHashes``; PhotoDNA is kept as given), the name
and folder of its first ``MediaFiles`` row, ``MediaSize``, and the metadata
keys of :mod:`examkit.hashformat`. Media are numbered from 1 in file order
(across all Cases); that number is the ``line`` given to the sink.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from examkit.hashformat import (
    EntrySink,
    HashSetError,
    HashSetFormat,
    parse_bool,
    parse_int,
    strip_bom,
)
from examkit.hookspecs import Register, hookimpl

CHUNK = 1 << 20  # characters read at a time (tests shrink it to exercise the buffer edges)
_WS = re.compile(r"[ \t\n\r]*")
_HEX = re.compile(r"[0-9a-fA-F]+")
_NUMBER_START = re.compile(r"-?[0-9]*(\.[0-9]*)?([eE][-+]?[0-9]*)?")
_VERSION = re.compile(r"/(\d+(?:\.\d+)+)\.xml", re.IGNORECASE)
_METADATA_KEYS = ("odata.metadata", "@odata.context")
# digest -> (Media field, hex length)
_DIGESTS = {"md5": ("MD5", 32), "sha1": ("SHA1", 40), "sha256": ("SHA256", 64)}
# perceptual hashes some exports carry, as Media fields or AlternativeHashes names
_PERCEPTUAL = {"pdq": ("PDQ", 64), "phash": ("pHash", 16)}
_PERCEPTUAL_FIELDS = {"pdq": ("PDQ", "Pdq", "pdq"), "phash": ("pHash", "PHash", "Phash", "phash")}
_SHOW = 200  # characters of a bad Media quoted in the malformed report


class _Stream:
    """A JSON text read piece by piece: hand-walked containers, ``raw_decode`` for values."""

    def __init__(self, fh: TextIO, path: Path) -> None:
        self.fh = fh
        self.path = path
        self.buf = ""
        self.pos = 0  # next unread character in ``buf``
        self.base = 0  # absolute character offset of ``buf[0]``
        self.lines = 0  # newlines before ``buf[0]``
        self.line_start = 0  # absolute offset where the line holding ``buf[0]`` starts
        self.eof = False
        self.decoder = json.JSONDecoder()

    # -- buffer ------------------------------------------------------------
    def _fill(self) -> bool:
        """Read more text (dropping what was consumed); ``False`` at end of file."""
        if self.eof:
            return False
        if self.pos:
            dropped = self.buf[: self.pos]
            newlines = dropped.count("\n")
            if newlines:
                self.lines += newlines
                self.line_start = self.base + dropped.rindex("\n") + 1
            self.base += self.pos
            self.buf = self.buf[self.pos :]
            self.pos = 0
        try:
            data = self.fh.read(max(CHUNK, len(self.buf)))  # grows for one very large value
        except UnicodeDecodeError as err:
            raise HashSetError(
                f"{self.path.name}: not UTF-8 text near character {self.base + len(self.buf)}: "
                f"{err.reason}",
                "VICS files are UTF-8 JSON; check the file was not re-encoded or damaged",
            ) from err
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def where(self, at: int) -> str:
        """``line L, column C (character offset N)`` for buffer index ``at``."""
        newline = self.buf.rfind("\n", 0, at)
        line = self.lines + self.buf.count("\n", 0, at) + 1
        start = self.base + newline + 1 if newline >= 0 else self.line_start
        absolute = self.base + at
        return f"line {line}, column {absolute - start + 1} (character offset {absolute})"

    def error(self, reason: str, at: int | None = None, truncated: bool = False) -> HashSetError:
        at = self.pos if at is None else at
        if truncated and self.eof:
            return HashSetError(
                f"{self.path.name}: VICS JSON is truncated at {self.where(len(self.buf))}: "
                f"the file ends inside the document ({reason})",
                "the file is incomplete; copy or export it again",
            )
        return HashSetError(
            f"{self.path.name}: invalid VICS JSON at {self.where(at)}: {reason}",
            "the file is damaged or not a VICS export; check it with a JSON validator",
        )

    # -- tokens ------------------------------------------------------------
    def peek(self) -> str:
        """The next non-blank character (not consumed); ``""`` at end of file."""
        while True:
            match = _WS.match(self.buf, self.pos)
            self.pos = match.end() if match else self.pos
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def expect(self, allowed: str, what: str) -> str:
        char = self.peek()
        if char == "" or char not in allowed:
            found = "end of file" if char == "" else repr(char)
            raise self.error(f"expected {what}, found {found}", truncated=char == "")
        self.pos += 1
        return char

    def value(self) -> Any:
        """Decode one complete JSON value at the current position."""
        self.peek()
        while True:
            try:
                obj, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as err:
                absolute = self.base + err.pos  # ``_fill`` may shift the buffer
                # The value may just run past the buffer: read more and try again.
                near_end = err.pos >= len(self.buf) - 64 or err.msg.startswith("Unterminated")
                if near_end and self._fill():
                    continue
                at = absolute - self.base
                raise self.error(err.msg, at, truncated=self._cut_short(err.msg, at)) from None
            if end >= len(self.buf) and self._fill():
                continue  # a number at the buffer's end may go on in the next chunk
            self.pos = end
            return obj

    def _cut_short(self, reason: str, at: int) -> bool:
        """Whether a decoding error at ``at`` (at end of file) is the text just stopping."""
        if not self.eof:
            return False
        rest = self.buf[at:].strip()
        return (
            not rest
            or reason.startswith("Unterminated string")
            or any(word.startswith(rest) for word in ("true", "false", "null"))
            or (reason.startswith("Invalid \\uXXXX") and len(rest) < 6)
            or bool(_NUMBER_START.fullmatch(rest))  # "-", "1.", "2e" ...
        )

    def members(self) -> Iterator[str]:
        """Walk an object: yields each key; the caller consumes its value."""
        self.expect("{", "'{'")
        if self.peek() == "}":
            self.pos += 1
            return
        while True:
            char = self.peek()
            if char != '"':
                raise self.error("expected a property name in double quotes", truncated=not char)
            key = self.value()
            self.expect(":", "':'")
            yield key
            if self.expect(",}", "',' or '}'") == "}":
                return

    def items(self) -> Iterator[None]:
        """Walk an array: yields once per element; the caller consumes it."""
        self.expect("[", "'['")
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            yield None
            if self.expect(",]", "',' or ']'") == "]":
                return


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text or None


def _tags(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        value = [value]
    tags = []
    for tag in value:
        if isinstance(tag, dict):  # {"Tag": "..."} / {"Name": "..."} forms
            tag = next((tag[k] for k in ("Tag", "Name", "Value") if k in tag), None)
        text = _text(tag)
        if text is not None:
            tags.append(text)
    return tags


def _media_id(value: Any) -> int | str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return _text(value)


class _Import:
    """The state of one file's import: Media numbering and the sink."""

    def __init__(self, sink: EntrySink) -> None:
        self.sink = sink
        self.index = 0

    def media(self, obj: Any) -> None:
        self.index += 1
        index = self.index
        if not isinstance(obj, dict):
            self.sink.malformed(index, "Media is not a JSON object", _show(obj))
            return
        hashes = {algo: obj.get(field) for algo, (field, _n) in _DIGESTS.items()}
        for algo, fields in _PERCEPTUAL_FIELDS.items():  # where an export carries them
            hashes[algo] = next((obj[f] for f in fields if obj.get(f) not in (None, "")), None)
        photodna = obj.get("PhotoDNA")
        alternatives = obj.get("AlternativeHashes")
        if isinstance(alternatives, list):  # VICS 1.3: [{"HashName": ..., "HashValue": ...}]
            for alt in alternatives:
                if not isinstance(alt, dict):
                    continue
                kind = str(alt.get("HashName") or "").strip().lower().replace("-", "")
                if kind == "photodna" and photodna in (None, ""):
                    photodna = alt.get("HashValue")
                elif kind in hashes and hashes[kind] in (None, ""):
                    hashes[kind] = alt.get("HashValue")
        digests: dict[str, str] = {}
        for algo, (field, length) in {**_DIGESTS, **_PERCEPTUAL}.items():
            value = hashes[algo]
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            text = value.strip() if isinstance(value, str) else ""
            if len(text) != length or not _HEX.fullmatch(text):
                self.sink.malformed(index, f"{field} is not {length} hex digits", _show(obj))
                return
            digests[algo] = text.lower()
        if not digests:
            self.sink.malformed(index, "Media has no MD5, SHA1 or PDQ", _show(obj))
            return
        files = obj.get("MediaFiles")
        first = files[0] if isinstance(files, list) and files else None
        first = first if isinstance(first, dict) else {}
        name = _text(first.get("FileName")) or _text(obj.get("FileName")) or _text(obj.get("Name"))
        file_path = _text(first.get("FilePath")) or _text(obj.get("RelativeFilePath"))
        size = parse_int(obj.get("MediaSize"))
        meta = {
            "category": parse_int(obj.get("Category")),
            "series": _text(obj.get("Series")),
            "victim_identified": parse_bool(obj.get("VictimIdentified")),
            "offender_identified": parse_bool(obj.get("OffenderIdentified")),
            "is_distributed": parse_bool(obj.get("IsDistributed")),
            "is_precategorized": parse_bool(obj.get("IsPrecategorized")),
            "media_id": _media_id(obj.get("MediaID")),
            "tags": _tags(obj.get("Tags")),
            "comments": _text(obj.get("Comments")),
            "photodna": _text(photodna),
            "file_path": file_path,
        }
        self.sink.add(
            **digests,
            name=name,
            size=size if size is not None and size >= 0 else None,
            meta={k: v for k, v in meta.items() if v is not None and v != []},
            line=index,
        )


def _show(obj: Any) -> str:
    """The identifying fields of a bad Media (the whole of it if it has none), for the report."""
    if isinstance(obj, dict):
        files = obj.get("MediaFiles")
        first = files[0] if isinstance(files, list) and files and isinstance(files[0], dict) else {}
        summary = {k: obj[k] for k in ("MediaID", "MD5", "SHA1", "odata.id") if k in obj}
        if "FileName" in first:
            summary["FileName"] = first["FileName"]
        obj = summary or obj
    return json.dumps(obj, ensure_ascii=False)[:_SHOW]


def _version(url: str, key: str) -> str | None:
    match = _VERSION.search(url)
    if match:
        return match.group(1)
    return "2.0" if key == "@odata.context" else None


class VicsFormat(HashSetFormat):
    name = "vics"
    description = "Project VIC VICS JSON 1.x / 2.0 (Media or Cases of Media)"
    version = "1"
    priority = 80

    def detect(self, head: bytes, path: Path) -> bool:
        text = strip_bom(head)
        if not text.lstrip().startswith(b"{"):
            return False
        if not any(b'"' + key.encode() + b'"' in text for key in _METADATA_KEYS):
            return False
        return b'"value"' in text

    def read(self, path: Path, sink: EntrySink) -> None:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            stream = _Stream(fh, path)
            state = _Import(sink)
            media_set = False  # ``value`` holds Media (the URL says so, or the first one was)
            seen_value = False
            for key in stream.members():
                if key == "value":
                    if stream.peek() != "[":
                        raise stream.error("'value' is not an array")
                    seen_value = True
                    for _ in stream.items():
                        if media_set or stream.peek() != "{":
                            self._entry(stream.value(), state)
                        elif not self._case_or_media(stream, state):
                            media_set = True  # a Media: decode the others whole, it is faster
                elif key in _METADATA_KEYS:
                    url = stream.value()
                    url = url if isinstance(url, str) else ""
                    media_set = url.rstrip().endswith("#Media")
                    sink.provenance(vics_version=_version(url, key), odata_context=url or None)
                else:
                    stream.value()
            if stream.peek() != "":
                raise stream.error("unexpected data after the end of the JSON document")
            if not seen_value:
                raise HashSetError(
                    f"{path.name}: VICS JSON has no 'value' array",
                    "a VICS export holds its Media (or Cases) in a top-level 'value' array",
                )

    @staticmethod
    def _entry(obj: Any, state: _Import) -> None:
        """An element of ``value`` decoded whole: a Media, or a (small) Case of Media."""
        if isinstance(obj, dict) and isinstance(obj.get("Media"), list):
            for media in obj["Media"]:
                state.media(media)
        else:
            state.media(obj)

    @staticmethod
    def _case_or_media(stream: _Stream, state: _Import) -> bool:
        """Walk one element of ``value`` key by key, streaming a Case's ``Media`` array.

        Returns whether it was a Case.
        """
        fields: dict[str, Any] = {}
        is_case = False
        for key in stream.members():
            if key == "Media" and stream.peek() == "[":
                is_case = True
                for _ in stream.items():
                    state.media(stream.value())
            else:
                fields[key] = stream.value()
        if not is_case:
            state.media(fields)
        return is_case


@hookimpl
def register_hashset_formats(register: Register) -> None:
    register(VicsFormat())
