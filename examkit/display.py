"""The display gate: the only way evidence strings reach a screen, log or report.

Every string that comes from evidence (file names, paths, labels, hash-set
metadata) passes through :func:`safe_text` before it is shown. Control, escape
and bidirectional-override characters are shown as visible escapes, so bytes
from a seized disk can never move the cursor, set the clipboard (OSC 52) or
reorder text on the examiner's screen. Renderers must also treat the result as
plain text (never as rich markup). Names of flagged files are withheld unless
the examiner asked to see them (:class:`DisplayPolicy`).
"""

from __future__ import annotations

import re
import unicodedata

# Bidirectional controls and other invisible format characters that can make
# text read differently from what it is (Trojan Source, CVE-2021-42574).
_FORMAT_CHARS = frozenset(
    "\u061c\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\ufeff\ufff9\ufffa\ufffb"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
WITHHELD = "<withheld>"
_PLAIN = re.compile(r"[\x20-\x5b\x5d-\x7e]*")  # printable ASCII except backslash: shown as is


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if ch in _NAMED:
        return _NAMED[ch]
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _needs_escape(ch: str) -> bool:
    if ch in _NAMED or ch in _FORMAT_CHARS:
        return True
    cat = unicodedata.category(ch)
    # Cc: C0/C1 controls, DEL; Cs: lone surrogates (from undecodable bytes);
    # Zl/Zp: line and paragraph separators; Co/Cn: private use and unassigned.
    return cat in ("Cc", "Cs", "Zl", "Zp", "Co", "Cn")


def safe_text(value: str | bytes | None, max_len: int | None = None) -> str:
    """Return ``value`` with every unsafe character shown as a visible escape.

    Bytes that are not valid UTF-8 are shown as ``\\xNN``; a backslash is
    doubled so the escaped form is unambiguous. ``max_len`` cuts long strings
    (after escaping) and marks the cut with an ellipsis.
    """
    if value is None:
        return ""
    text = value.decode("utf-8", errors="surrogateescape") if isinstance(value, bytes) else value
    if _PLAIN.fullmatch(text):
        return text if max_len is None or len(text) <= max_len else _cut(text, max_len)
    out: list[str] = []
    for ch in text:
        if 0xDC80 <= ord(ch) <= 0xDCFF:  # a raw byte kept by surrogateescape
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif _needs_escape(ch):
            out.append(_escape_char(ch))
        else:
            out.append(ch)
    result = "".join(out)
    if max_len is not None and len(result) > max_len:
        result = _cut(result, max_len)
    return result


_PLAIN_BYTES = re.compile(rb"[\x20-\x5b\x5d-\x7e]*")


def safe_lines(values: list[bytes | None]) -> list[bytes]:
    """Many raw strings through the gate at once, as UTF-8 (``None`` -> empty).

    When every value is plain printable ASCII (the usual case) one check covers
    them all; otherwise each value goes through :func:`safe_text`.
    """
    if _PLAIN_BYTES.fullmatch(b"".join(v for v in values if v)):
        return [v or b"" for v in values]
    return [safe_text(v).encode("utf-8") for v in values]


def _cut(text: str, max_len: int) -> str:
    return text[: max(0, max_len - 1)] + "…"


def decode_name(raw: bytes) -> tuple[str, bytes | None]:
    """Decode a file-system name: ``(text, raw_bytes_if_not_utf8)``.

    Valid UTF-8 comes back as text and ``None``. Anything else comes back as
    text with each bad byte written ``\\xNN`` plus the exact raw bytes, which
    the case database keeps alongside so nothing is lost.
    """
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="backslashreplace"), raw


class DisplayPolicy:
    """What may be shown: names of flagged files only when ``show_flagged_names``.
    (A plain class, not a dataclass: the lean lookup path imports this module, and
    ``dataclasses`` costs more process start time than the lookup itself.)"""

    __slots__ = ("max_len", "show_flagged_names")

    def __init__(self, show_flagged_names: bool = False, max_len: int | None = None) -> None:
        self.show_flagged_names = show_flagged_names
        self.max_len = max_len

    def name(self, value: str | bytes | None, flagged: bool = False) -> str:
        """A file name or path, withheld when the file is flagged."""
        if flagged and not self.show_flagged_names:
            return WITHHELD
        return safe_text(value, self.max_len)

    def path(self, value: str | bytes | None, flagged: bool = False) -> str:
        """A path; for a flagged file the folder is shown and the file name withheld."""
        if flagged and not self.show_flagged_names:
            text = value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
            folder = (text or "").rpartition("/")[0]
            return f"{safe_text(folder, self.max_len)}/{WITHHELD}"
        return safe_text(value, self.max_len)

    def text(self, value: str | bytes | None) -> str:
        """Any other evidence string (labels, descriptions, metadata)."""
        return safe_text(value, self.max_len)
