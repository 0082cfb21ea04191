"""Hash-set loader plugins: the base class and the sink a loader writes entries to.

A loader (``HashSetFormat``) recognises its format from the first bytes of a
file and streams entries into an :class:`EntrySink`. It never builds the whole
set in memory: the sink compiles entries into the on-disk index as they come.

Entry metadata uses these keys where a format has them (all optional):
``category`` (int, the raw number from the set), ``series``, ``victim_identified``,
``offender_identified``, ``is_distributed``, ``is_precategorized`` (bool or None),
``media_id``, ``tags`` (list of str), ``comments``, ``photodna``, ``file_path``,
plus format-specific keys (``crc32``, ``package_id``, ``product_code`` ...).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .errors import ExamkitError

if TYPE_CHECKING:  # numpy is not imported by the workers' fork server (examkit/preload.py)
    import numpy as np

HEAD_BYTES = 65536  # what ``detect`` sees of each file

# digest name -> raw length in bytes
DIGESTS: dict[str, int] = {"md5": 16, "sha1": 20, "sha256": 32}
BY_HEX_LENGTH: dict[int, str] = {2 * n: name for name, n in DIGESTS.items()}
# perceptual hashes a set may carry (matched by distance, not equality): name -> bytes
PERCEPTUAL: dict[str, int] = {"pdq": 32, "phash": 8}


class HashSetError(ExamkitError):
    """A hash-set file cannot be read: unknown format, truncated, corrupt."""


class MalformedInput(HashSetError):
    """A malformed entry in ``--strict`` mode."""


class EntrySink(Protocol):
    """Where a loader puts entries. Implemented by the index writer."""

    strict: bool

    def add(
        self,
        *,
        md5: str | bytes | None = None,
        sha1: str | bytes | None = None,
        sha256: str | bytes | None = None,
        name: str | bytes | None = None,
        size: int | None = None,
        meta: Mapping[str, Any] | None = None,
        line: int | None = None,
        pdq: str | bytes | None = None,
        phash: str | bytes | None = None,
    ) -> bool:
        """Add one entry. Digests are hex (any case, surrounding blanks ignored) or raw bytes.

        ``pdq`` (64 hex digits) and ``phash`` (16) are perceptual hashes, matched
        by Hamming distance; an entry may carry only those.

        An entry without any valid digest, or with a digest of the wrong length,
        is reported as malformed (with ``line``) and ``False`` is returned.
        """
        ...

    def add_columns(
        self,
        digests: Mapping[str, np.ndarray],
        names_blob: bytes | memoryview | None = None,
        name_spans: np.ndarray | None = None,
        sizes: np.ndarray | None = None,
    ) -> None:
        """Add many entries at once (vectorised loaders).

        ``digests`` maps a digest name to an array of raw digests (dtype ``S{n}``),
        all the same length. ``name_spans`` is an ``(n, 2)`` array of start/end
        offsets into ``names_blob``; ``sizes`` an int64 array (-1: unknown).
        """
        ...

    def malformed(self, line: int | None, reason: str, text: str | bytes | None = None) -> None:
        """Count a malformed line; keeps the first few for the report. Raises if strict."""
        ...

    def provenance(self, **values: Any) -> None:
        """Facts about the set from the file itself (version, build, set name ...)."""
        ...


class HashSetFormat(ABC):
    """A hash-set format plugin (registered with ``register_hashset_formats``)."""

    name: str
    description: str = ""
    version: str = "1"
    priority: int = 50  # higher is tried first when detecting

    @abstractmethod
    def detect(self, head: bytes, path: Path) -> bool:
        """Whether ``head`` (the first ``HEAD_BYTES`` of the file) is this format."""

    @abstractmethod
    def read(self, path: Path, sink: EntrySink) -> None:
        """Stream every entry of ``path`` into ``sink``.

        Raise :class:`HashSetError` for a file that cannot be read at all
        (truncated JSON, corrupt database); report single bad lines with
        ``sink.malformed`` and go on.
        """


def strip_bom(head: bytes) -> bytes:
    return head[3:] if head.startswith(b"\xef\xbb\xbf") else head


def parse_bool(value: Any) -> bool | None:
    """``True``/``False`` from JSON booleans, 0/1 and the usual strings; ``None`` if unknown."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "t", "yes", "y", "1"):
        return True
    if text in ("false", "f", "no", "n", "0"):
        return False
    return None


def parse_int(value: Any) -> int | None:
    """An int from a JSON number or a numeric string; ``None`` if blank or not a number."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        try:
            as_float = float(str(value).strip())
        except ValueError:
            return None
        return int(as_float) if as_float.is_integer() else None
