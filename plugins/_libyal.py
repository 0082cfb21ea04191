"""Shared by the plugins on libyal bindings (libvmdk, libvhdi, libqcow, libfsapfs, libfsxfs)."""

from __future__ import annotations

import contextlib
import re
from typing import Any

from examkit.errors import EvidenceError
from examkit.evidence import MediaInfo, MediaStream

_LIBYAL_PART = re.compile(r"\.\s+(?=[A-Za-z]\w*_\w+: )")


def libyal_cause(exc: BaseException) -> str:
    """The most specific reason in a libyal error chain (``py…: a. lib…: b. …``), one line."""
    text = " ".join(str(exc).split())
    parts = [p.split(": ", 1)[-1].rstrip(".") for p in _LIBYAL_PART.split(text) if p]
    if not parts:
        return type(exc).__name__
    return parts[1] if len(parts) > 1 else parts[0]


def read_at(handle: Any, size: int, offset: int, length: int, library: str, label: str) -> bytes:
    """``length`` bytes at ``offset`` of a libyal media handle (``read_buffer_at_offset``),
    clipped to ``size``; a library error or a short read (a truncated image) is one line."""
    if offset >= size or length <= 0:
        return b""
    length = min(length, size - offset)
    try:
        data = bytes(handle.read_buffer_at_offset(length, offset) or b"")
    except OSError as exc:
        raise OSError(
            f"{library} cannot read {length} bytes at offset {offset}: {libyal_cause(exc)}"
        ) from exc
    if len(data) < length:
        raise OSError(f"{label} data ends early at offset {offset + len(data)}: truncated")
    return data


def libyal_stream(
    parent: Any, handle: Any, size: int, label: str, owner: Any = None, close: bool = True
) -> Any:
    """A ``LayerStream`` over a libyal object with ``read_buffer_at_offset`` (a logical
    volume, a decrypted volume, a shadow-copy store). ``owner`` (the object ``handle``
    came from) is kept alive with the stream; ``handle`` is closed with it if ``close``."""
    from examkit.layers import LayerStream

    library = type(handle).__module__ or "libyal"

    def read(at: int, n: int, _owner: Any = owner) -> bytes:
        return read_at(handle, size, at, n, library, label)

    return LayerStream(parent, size, read, [handle] if close else [])


class LibyalMedia(MediaStream):
    """A media stream over a libyal image handle (libqcow, libvhdi, libvmdk)."""

    library = "libyal"  # named in read errors
    label = "image"

    def __init__(self, handle: Any, info: MediaInfo) -> None:
        self._handle = handle
        super().__init__(info)

    def read(self, offset: int, length: int) -> bytes:
        return read_at(self._handle, self.size, offset, length, self.library, self.label)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._handle.close()


def refuse_empty(media: MediaStream, source: Any, fmt: str, check: str) -> MediaStream:
    """``media``, unless it has 0 bytes (a corrupt or incomplete image): then it is closed
    and refused with one line."""
    if media.size == 0:
        media.close()
        raise EvidenceError(
            f"{source} describes a disk of 0 bytes: the {fmt} is corrupt or incomplete",
            f"check it with {check}; restore it from the original copy",
        )
    return media
