"""Present an examkit media stream to The Sleuth Kit (pytsk3)."""

from __future__ import annotations

from typing import Any

import pytsk3

from examkit.evidence import MediaStream

TSK_VERSION = str(pytsk3.TSK_VERSION_STR)


class MediaImg(pytsk3.Img_Info):  # type: ignore[misc]
    """A TSK image whose reads come from a container plugin's media stream."""

    def __init__(self, media: MediaStream) -> None:
        self._media = media
        super().__init__(url="", type=pytsk3.TSK_IMG_TYPE_EXTERNAL)

    def read(self, offset: int, size: int) -> bytes:
        return self._media.read(offset, size)

    def get_size(self) -> int:
        return self._media.size

    def close(self) -> None:
        pass


def _make(media: MediaStream) -> Any:
    native = getattr(media, "native_path", None)
    if native:
        # A single raw file: let TSK read it directly (no Python call per read).
        return pytsk3.Img_Info(native, type=pytsk3.TSK_IMG_TYPE_RAW)
    return MediaImg(media)


def tsk_image(media: MediaStream) -> Any:
    """The TSK image for ``media``, made once per media stream."""
    return media.adapter("tsk", _make)


def enum_name(value: Any, prefix: str) -> str:
    """The name of a pytsk3 enum value: ``TSK_FS_TYPE_NTFS`` (1) -> ``ntfs``.

    pytsk3 hands enums over as plain integers, so the name is found by value
    among the module's constants (the ``*_DETECT`` masks are skipped).
    """
    for attr in dir(pytsk3):
        if attr.startswith(prefix) and not attr.endswith(("_DETECT", "_UNSUPP")):
            constant = getattr(pytsk3, attr)
            if isinstance(constant, int) and constant == int(value):
                return attr[len(prefix) :].lower()
    return f"unknown-{int(value)}"
