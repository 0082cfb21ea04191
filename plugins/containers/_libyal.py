"""Shared by the libyal container plugins (libvmdk, libvhdi, libqcow)."""

from __future__ import annotations

import re

_LIBYAL_PART = re.compile(r"\.\s+(?=[A-Za-z]\w*_\w+: )")


def libyal_cause(exc: BaseException) -> str:
    """The most specific reason in a libyal error chain (``py…: a. lib…: b. …``), one line."""
    text = " ".join(str(exc).split())
    parts = [p.split(": ", 1)[-1].rstrip(".") for p in _LIBYAL_PART.split(text) if p]
    if not parts:
        return type(exc).__name__
    return parts[1] if len(parts) > 1 else parts[0]
