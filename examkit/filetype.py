"""Real file type from content (libmagic) and extension-mismatch detection."""

from __future__ import annotations

import hashlib
import mimetypes
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from typing import Any, NamedTuple

from . import magic_binary
from .magic_binary import BinaryMagic
from .magic_subset import TextMagic, compiled_database, is_text, load, unavailable

# MIME types that say nothing specific about the content: no mismatch is
# claimed for them.
_UNSPECIFIC = frozenset(
    {
        "application/octet-stream",
        "inode/x-empty",
        "application/x-empty",
        "text/plain",
        "application/x-data",
    }
)

# Extensions whose content legitimately has another MIME type than
# ``mimetypes`` gives (container formats, text dialects).
_ALSO = {
    ".docx": {"application/zip"},
    ".xlsx": {"application/zip"},
    ".pptx": {"application/zip"},
    ".odt": {"application/zip"},
    ".jar": {"application/zip", "application/java-archive"},
    ".apk": {"application/zip"},
    ".epub": {"application/zip"},
    ".svg": {"image/svg+xml", "text/xml", "application/xml", "text/html"},
    ".xml": {"text/xml", "application/xml"},
    ".htm": {"text/html"},
    ".html": {"text/html"},
    ".csv": {"text/csv"},
    ".json": {"application/json"},
    ".js": {"application/javascript", "text/javascript"},
    ".py": {"text/x-script.python", "text/x-python"},
    ".sh": {"text/x-shellscript"},
    ".md": {"text/markdown"},
    ".jpg": {"image/jpeg"},
    ".jpeg": {"image/jpeg"},
    ".jfif": {"image/jpeg"},
    ".bmp": {"image/bmp", "image/x-ms-bmp"},
    ".ico": {"image/vnd.microsoft.icon", "image/x-icon"},
    ".heic": {"image/heic", "image/heif"},
    ".gz": {"application/gzip", "application/x-gzip"},
    ".tgz": {"application/gzip", "application/x-gzip"},
    ".7z": {"application/x-7z-compressed"},
    ".rar": {"application/x-rar", "application/vnd.rar"},
    ".mp4": {"video/mp4"},
    ".m4v": {"video/mp4", "video/x-m4v"},
    ".mov": {"video/quicktime"},
    ".avi": {"video/x-msvideo"},
    ".wmv": {"video/x-ms-asf", "video/x-ms-wmv"},
    ".mkv": {"video/x-matroska"},
    ".exe": {"application/x-dosexec", "application/vnd.microsoft.portable-executable"},
    ".dll": {"application/x-dosexec", "application/vnd.microsoft.portable-executable"},
    ".sqlite": {"application/vnd.sqlite3", "application/x-sqlite3"},
    ".db": {"application/vnd.sqlite3", "application/x-sqlite3"},
}


@lru_cache(maxsize=1)
def _magic() -> Any:
    import magic

    return magic.Magic(mime=True)


@lru_cache(maxsize=1)
def _text_magic() -> tuple[TextMagic | None, str]:
    """libmagic with the smaller database for ASCII text (examkit.magic_subset), if built."""
    try:
        return load()
    except Exception as exc:  # any surprise here costs speed, never an answer
        return None, f"off: {type(exc).__name__}: {exc}"


@lru_cache(maxsize=1)
def _binary_magic() -> tuple[BinaryMagic | None, str]:
    """libmagic's copies for binary heads (examkit.magic_binary), if built."""
    try:
        return magic_binary.load()
    except Exception as exc:  # any surprise here costs speed, never an answer
        return None, f"off: {type(exc).__name__}: {exc}"


def text_magic_status() -> str:
    """Which database types the heads, for the run's tool versions (builds nothing)."""
    try:
        path = compiled_database()
        where = f"{path} (sha256 {hashlib.sha256(path.read_bytes()).hexdigest()})" if path else ""
        reason = unavailable()
    except Exception as exc:  # a run is never stopped by its own record of versions
        return f"unknown ({type(exc).__name__}: {exc})"
    where = where or "libmagic's default"
    if reason is not None:
        return f"{where}; full database for every head: {reason}"
    return (f"{where}; ASCII text through its checked subset (examkit.magic_subset), other"
            " heads through copies without the binary rules they cannot match"
            " (examkit.magic_binary)")  # fmt: skip


def typing_used() -> str:
    """How this process types heads, for the run's record (loads the subsets if it has not
    yet): libmagic's version; the checked subset for ASCII text or the full database; the
    binary copies for other heads or the full database; each with the reason."""
    text, reason = _text_magic()
    how = "ASCII text through its checked subset" if text else "full database for every head"
    binary, why = _binary_magic()
    other = "other heads through binary copies" if binary else "other heads: full database"
    return f"libmagic {libmagic_version()}: {how} ({reason}); {other} ({why})"


def libmagic_version() -> str:
    """The libmagic version python-magic is using, or ``unknown``."""
    try:
        import magic

        return str(magic.version())  # type: ignore[no-untyped-call]
    except Exception:
        return "unknown"


# Distinct heads whose answer each process remembers: at most 1,024 x 8 KiB
# (8 MiB). libmagic sees nothing but the head, so a head seen before (copies
# of one file, files that begin alike) has the same answer; typing a text file
# costs 0.3-4 ms, a lookup about 1 microsecond.
HEAD_CACHE = 1024
_EDGE = 64  # bytes of each end of a head in its short key


class CacheInfo(NamedTuple):
    hits: int
    misses: int
    maxsize: int
    currsize: int


class _HeadAnswers:
    """The answers for the last ``size`` distinct heads, the least recently used dropped.
    A head is looked up by a short key (its length and its first and last 64 bytes), and
    an answer is used only for the very same head: ``lru_cache`` hashed whole heads
    (Python's SipHash over 8 KiB: ~2.4 µs a stream in a scan's profile). Two heads with
    one key take turns in its place."""

    def __init__(self, typer: Callable[[bytes], str | None], size: int) -> None:
        self._typer, self.maxsize = typer, size
        self._seen: OrderedDict[tuple[int, bytes, bytes], tuple[bytes, str | None]] = OrderedDict()
        self.hits = self.misses = 0

    def __call__(self, head: bytes) -> str | None:
        key = (len(head), head[:_EDGE], head[-_EDGE:])
        # each step is one call that cannot fail, whatever another thread does meanwhile
        # (a Dask worker may run several units at once)
        kept = self._seen.pop(key, None)
        if kept is not None and kept[0] == head:
            self._seen[key] = kept  # now the most recently used
            self.hits += 1
            return kept[1]
        self.misses += 1
        answer = self._typer(head)
        self._seen[key] = (head, answer)
        while len(self._seen) > self.maxsize:
            try:
                self._seen.popitem(last=False)
            except KeyError:  # emptied by another thread
                break
        return answer

    def cache_info(self) -> CacheInfo:
        return CacheInfo(self.hits, self.misses, self.maxsize, len(self._seen))

    def cache_clear(self) -> None:
        self._seen.clear()
        self.hits = self.misses = 0


def detect_mime(head: bytes) -> str | None:
    """MIME type of a stream from its first bytes; ``None`` if libmagic fails."""
    if not head:
        return "inode/x-empty"
    return _mime_of_head(head if type(head) is bytes else bytes(head))


def _type_head(head: bytes) -> str | None:
    text, ascii_text = _text_magic()[0], is_text(head)
    try:
        if ascii_text:
            copy = text.copy_for(head, True) if text is not None else None
        else:  # other heads
            binary = _binary_magic()[0]
            copy = binary.handle(head, False) if binary is not None else None
    except Exception:  # a copy that cannot be made (no room for its temporary file)
        copy = None
    try:
        mime = (copy if copy is not None else _magic()).from_buffer(head)  # the full answer
    except Exception:
        return None
    return str(mime) if mime else None


_mime_of_head = _HeadAnswers(_type_head, HEAD_CACHE)


def _extension(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    dot = base.rfind(".")
    if dot <= 0 or dot == len(base) - 1:
        return ""
    return base[dot:].lower()


@lru_cache(maxsize=4096)
def expected_mimes(ext: str) -> frozenset[str]:
    """MIME types an extension (``.jpg``) promises; empty when it is unknown. Remembered
    per extension: ``mimetypes`` took ~4 µs a file."""
    if not ext:
        return frozenset()
    found = set(_ALSO.get(ext, set()))
    guessed, _ = mimetypes.guess_type("x" + ext, strict=False)
    if guessed:
        found.add(guessed)
    return frozenset(found)


def extension_mismatch(name: str, mime: str | None) -> int | None:
    """1 if the content's type contradicts the extension, 0 if it agrees, None if unknown.

    Only specific content types count (a JPEG named ``.txt`` is a mismatch; an
    unrecognised binary named ``.jpg`` is not decided).
    """
    if not mime or mime in _UNSPECIFIC:
        return None
    expected = expected_mimes(_extension(name))
    if not expected:
        return None
    if mime in expected:
        return 0
    # text/* content under a text extension of another dialect is not a mismatch
    if mime.startswith("text/") and any(e.startswith("text/") for e in expected):
        return 0
    return 1
